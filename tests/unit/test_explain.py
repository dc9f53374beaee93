"""Reasons picked for a whole batch at once read as reasons picked row by row."""

import numpy as np

from models.explain import reason_text, top_reasons

FEATURES = ["tx_amount", "tx_during_night", "nb_tx", "unnamed"]
TEXTS: dict[str, str | list[str]] = {
    "tx_amount": "amount {value:.2f}",
    "tx_during_night": ["paid by day", "paid at night"],
    "nb_tx": "{value:g} payments",
}


def _one_row(contribs: np.ndarray, values: np.ndarray) -> list[dict[str, float | str]]:
    """The plain per-row version: sort by |SHAP| (bias left out), words for the top three;
    a -0.0 reads as 0."""
    values = values + 0.0
    order = sorted(range(len(FEATURES)), key=lambda c: -abs(float(contribs[c])))[:3]
    return [
        {
            "feature": FEATURES[c],
            "value": float(values[c]),
            "contribution": float(contribs[c]),
            "text": reason_text(
                TEXTS.get(FEATURES[c], FEATURES[c] + " = {value:g}"),
                float(values[c]),
                float(contribs[c]),
            ),
        }
        for c in order
    ]


def test_batch_reasons_equal_per_row_reasons() -> None:
    rng = np.random.default_rng(3)
    n = 400
    values = np.column_stack(
        [
            rng.gamma(2.0, 50.0, n),  # amounts: all distinct
            rng.integers(0, 2, n),  # a flag: two values, both directions
            rng.integers(0, 4, n),  # counts: a few values repeat with either sign
            rng.normal(size=n).round(1),
        ]
    ).astype(float)
    contribs = rng.normal(size=(n, len(FEATURES) + 1)).astype(np.float32)  # + bias column
    contribs[::7, 2] = -contribs[::7, 2]  # the same count with both signs
    got = top_reasons(contribs, values, FEATURES, TEXTS)
    assert got == [_one_row(contribs[i], values[i]) for i in range(n)]
    assert {r["text"] for row in got for r in row} >= {"paid at night (raises risk)"}
