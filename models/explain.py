"""Top SHAP contributions in words a reviewer understands (pure: no MLflow import)."""

import numpy as np
import orjson
import pandas as pd

from models.train import FraudModel

TOP_N = 3
MODEL_ARTIFACT = "model"  # the saved FraudModel directory inside the MLflow model
TEXTS_FILE = "texts.json"  # reviewer wording per feature, saved beside the booster


def reason_text(template: str | list[str], value: float, contribution: float) -> str:
    """Fill the feature's template; flags pick [text if 0, text if 1]."""
    text = (
        template[int(value >= 0.5)] if isinstance(template, list) else template.format(value=value)  # noqa: PLR2004 - a 0/1 flag
    )
    return f"{text} ({'raises' if contribution > 0 else 'lowers'} risk)"


def top_reasons(
    contributions: np.ndarray,
    values: np.ndarray,
    features: list[str],
    texts: dict[str, str | list[str]],
    n: int = TOP_N,
) -> list[list[dict[str, float | str]]]:
    """Per row, the `n` features with the largest |SHAP| (exact TreeSHAP, log-odds; the bias
    column, last, is left out).

    Picked for all rows at once; each distinct (feature, value, direction) is put in words once
    per call: counts and flags repeat across a batch, so most rows' words are found, not made.
    """
    contribs = contributions[:, :-1]
    top = np.argsort(-np.abs(contribs), axis=1, kind="stable")[:, :n]
    # + 0.0: a -0.0 reads as 0 (the words are kept per value, and -0.0 == 0.0)
    top_values = (np.take_along_axis(values, top, axis=1).astype(float) + 0.0).tolist()
    top_contribs = np.take_along_axis(contribs, top, axis=1).astype(float).tolist()
    templates = [texts.get(name, name + " = {value:g}") for name in features]
    words: dict[tuple[int, float, bool], str] = {}
    reasons = []
    for cols, row_values, row_contribs in zip(top.tolist(), top_values, top_contribs, strict=True):
        row: list[dict[str, float | str]] = []
        for c, value, contribution in zip(cols, row_values, row_contribs, strict=True):
            key = (c, value, contribution > 0)
            text = words.get(key)
            if text is None:
                text = words[key] = reason_text(templates[c], value, contribution)
            row.append(
                {"feature": features[c], "value": value, "contribution": contribution, "text": text}
            )
        reasons.append(row)
    return reasons


def explain(
    model: FraudModel, X: pd.DataFrame, texts: dict[str, str | list[str]]
) -> tuple[np.ndarray, list[list[dict[str, float | str]]]]:
    """Calibrated score and top reasons per row, from one matrix and one TreeSHAP pass."""
    values = model.values(X)
    score, contributions = model.score_and_contributions(values)
    return score, top_reasons(contributions, values, model.features, texts)


def confidence(score: np.ndarray) -> np.ndarray:
    """How sure the model is of its verdict either way (the router's review band uses it)."""
    return np.maximum(score, 1 - score)


def predict_frame(
    model: FraudModel, X: pd.DataFrame, texts: dict[str, str | list[str]]
) -> pd.DataFrame:
    """What the registered model returns: score, confidence and reasons as a JSON string."""
    score, reasons = explain(model, X, texts)
    return pd.DataFrame(
        {
            "score": score,
            "confidence": confidence(score),
            "reasons": [orjson.dumps(r).decode() for r in reasons],
        },
        index=X.index,
    )
