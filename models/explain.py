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
        template[int(value >= 0.5)] if isinstance(template, list) else template.format(value=value)
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
    column, last, is left out)."""
    contribs = contributions[:, :-1]
    top = np.argsort(-np.abs(contribs), axis=1, kind="stable")[:, :n]
    reasons = []
    for row, cols in enumerate(top):
        reasons.append(
            [
                {
                    "feature": features[c],
                    "value": float(values[row, c]),
                    "contribution": float(contribs[row, c]),
                    "text": reason_text(
                        texts.get(features[c], features[c] + " = {value:g}"),
                        values[row, c],
                        contribs[row, c],
                    ),
                }
                for c in cols
            ]
        )
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
