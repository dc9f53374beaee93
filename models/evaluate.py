"""Model quality on a time-ordered holdout, including the handbook's card precision top-k."""

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    return float(average_precision_score(y, score))


def brier(y: np.ndarray, score: np.ndarray) -> float:
    """Mean squared error of the probability: checks calibration, not only ranking."""
    return float(brier_score_loss(y, score))


def card_precision_top_k(predictions: pd.DataFrame, k: int) -> float:
    """Handbook CP@k: reviewers can check k cards a day, so rank customers, not transactions.

    `predictions` has `tx_datetime`, `customer_id`, `is_fraud`, `score`. Per calendar day, each
    customer gets their highest score (and is compromised if any transaction is fraud); the
    share of compromised customers among the top k is that day's precision (divided by k even if
    fewer customers). Customers detected on an earlier day are left out of later days. Ties in
    score are broken by customer_id so the result is deterministic.
    """
    day = predictions["tx_datetime"].dt.normalize()
    detected: set[str] = set()
    daily = []
    for _, day_rows in predictions.groupby(day, sort=True):
        candidates = day_rows[~day_rows["customer_id"].isin(detected)]
        per_customer = candidates.groupby("customer_id")[["score", "is_fraud"]].max().reset_index()
        top = per_customer.sort_values(
            ["score", "customer_id"], ascending=[False, True], kind="stable"
        ).head(k)
        found = top.loc[top["is_fraud"] == 1, "customer_id"]
        daily.append(len(found) / k)
        detected.update(found)
    return float(np.mean(daily)) if daily else float("nan")


def evaluate(predictions: pd.DataFrame, k: int) -> dict[str, float]:
    """All holdout metrics from one frame of predictions (see `card_precision_top_k`)."""
    y, score = predictions["is_fraud"].to_numpy(int), predictions["score"].to_numpy(float)
    return {
        "roc_auc": roc_auc(y, score),
        "average_precision": average_precision(y, score),
        "brier": brier(y, score),
        f"card_precision_top_{k}": card_precision_top_k(predictions, k),
    }
