"""Top SHAP contributions in words a reviewer understands (pure: no MLflow import)."""

import json

import numpy as np
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
    model: FraudModel, X: pd.DataFrame, texts: dict[str, str | list[str]], n: int = TOP_N
) -> list[list[dict[str, float | str]]]:
    """Per row, the `n` features with the largest |SHAP| (exact TreeSHAP, log-odds)."""
    contribs = model.contributions(X)[:, :-1]  # last column is the bias
    values = X[model.features].to_numpy(float)
    top = np.argsort(-np.abs(contribs), axis=1, kind="stable")[:, :n]
    reasons = []
    for row, cols in enumerate(top):
        reasons.append(
            [
                {
                    "feature": model.features[c],
                    "value": float(values[row, c]),
                    "contribution": float(contribs[row, c]),
                    "text": reason_text(
                        texts.get(model.features[c], model.features[c] + " = {value:g}"),
                        values[row, c],
                        contribs[row, c],
                    ),
                }
                for c in cols
            ]
        )
    return reasons


def predict_frame(
    model: FraudModel, X: pd.DataFrame, texts: dict[str, str | list[str]]
) -> pd.DataFrame:
    """What the registered model returns: score, confidence and reasons as a JSON string."""
    score = model.predict_proba(X)
    return pd.DataFrame(
        {
            "score": score,
            "confidence": np.maximum(score, 1 - score),
            "reasons": [json.dumps(r) for r in top_reasons(model, X, texts)],
        },
        index=X.index,
    )
