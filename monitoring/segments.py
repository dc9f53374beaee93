"""The segments the QA reports cut errors by (policy `report.segments`): amount band, hour of
day, customer tenure, terminal risk, and whether the customer had paid at the terminal before.

False positives and negatives are the system's, on the final decision: a declined payment that
was legitimate (a false decline) and an approved one that was fraud (a miss), each as a share
of the known outcomes of its kind in the segment.
"""

import numpy as np
import pandas as pd

from fraudloop.policy import Segments
from monitoring.outcomes import APPROVED, DECLINED, FRAUD, LEGIT, NEVER, PENDING

SEGMENTS = {
    "amount": "amount band",
    "hour": "hour of day (UTC)",
    "tenure": "customer tenure (days)",
    "terminal_risk": "terminal risk (known-fraud share)",
    "terminal": "terminal, for the customer",
}
NO_HISTORY = "no history"
KNOWN, NEW = "known", "new"
ERROR_COLUMNS = [
    "segment",
    "band",
    "decisions",
    "outcome unknown",
    "legit known",
    "false declines",
    "false-decline rate",
    "fraud known",
    "missed fraud",
    "miss rate",
]


def band_names(edges: list[float], fmt: str) -> list[str]:
    """`[0, 50, 200]` -> `0-50`, `50-200`, `200 and up` (plain ASCII: the PDF's fonts)."""
    names = [f"{lo:{fmt}}-{hi:{fmt}}" for lo, hi in zip(edges, edges[1:], strict=False)]
    return [*names, f"{edges[-1]:{fmt}} and up"]


def bands(values: pd.Series, edges: list[float], fmt: str, missing: str | None = None) -> pd.Series:
    """Each value's band, [edge, next edge); missing values get the band `missing` (or NaN)."""
    names = band_names(edges, fmt)
    numbers = values.to_numpy(dtype=float)
    codes = np.clip(np.searchsorted(edges, numbers, side="right") - 1, 0, None)
    unknown = np.isnan(numbers)
    if missing is not None:
        names, codes = [*names, missing], np.where(unknown, len(names), codes)
    else:
        codes = np.where(unknown, -1, codes)
    return pd.Series(pd.Categorical.from_codes(codes, categories=names), index=values.index)


def segment_columns(
    frame: pd.DataFrame,
    first_seen: pd.Series,
    pair_first: pd.DataFrame,
    risk: pd.Series,
    seg: Segments,
) -> pd.DataFrame:
    """One column per segment, aligned with `frame` (tx_datetime, amount, customer_id,
    terminal_id); `first_seen` by customer, `pair_first` per (customer, terminal) pair,
    `risk` by terminal (`monitoring.qa_data`)."""
    tenure = (frame["tx_datetime"] - frame["customer_id"].map(first_seen)).dt.total_seconds()
    pair = frame[["customer_id", "terminal_id"]].merge(
        pair_first, on=["customer_id", "terminal_id"], how="left"
    )
    known = (pair["pair_first"].to_numpy() < frame["tx_datetime"].to_numpy()) & pair[
        "pair_first"
    ].notna().to_numpy()
    return pd.DataFrame(
        {
            "amount": bands(frame["amount"], seg.amount, ",.0f"),
            "hour": bands(frame["tx_datetime"].dt.hour.astype(float), seg.hour_of_day, "02.0f"),
            "tenure": bands(tenure / 86_400, seg.customer_tenure_days, ".0f", NO_HISTORY),
            "terminal_risk": bands(
                frame["terminal_id"].map(risk).astype(float), seg.terminal_risk, ".1%", NO_HISTORY
            ),
            "terminal": pd.Categorical(np.where(known, KNOWN, NEW), categories=[KNOWN, NEW]),
        },
        index=frame.index,
    )


def error_rows(final: pd.Series, outcome: pd.Series, segments: pd.DataFrame) -> pd.DataFrame:
    """False declines and misses per band of every segment (rows `ERROR_COLUMNS`)."""
    declined, approved = final.isin(DECLINED), final.isin(APPROVED)
    flags = pd.DataFrame(
        {
            "decisions": 1,
            "outcome unknown": outcome.isin([PENDING, NEVER]),
            "legit known": outcome == LEGIT,
            "false declines": declined & (outcome == LEGIT),
            "fraud known": outcome == FRAUD,
            "missed fraud": approved & (outcome == FRAUD),
        },
        index=final.index,
    ).astype(int)
    parts = []
    for name, title in SEGMENTS.items():
        counts = flags.groupby(segments[name], observed=False).sum()
        counts.insert(0, "band", counts.index.astype(str))
        counts.insert(0, "segment", title)
        parts.append(counts.reset_index(drop=True))
    table = pd.concat(parts, ignore_index=True)
    table["false-decline rate"] = _share(table["false declines"], table["legit known"])
    table["miss rate"] = _share(table["missed fraud"], table["fraud known"])
    return table[ERROR_COLUMNS]


def _share(part: pd.Series, whole: pd.Series) -> pd.Series:
    return (part / whole.where(whole > 0)).astype(float)
