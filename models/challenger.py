"""Train a challenger on what is known now and judge it against the champion on later data.

Train and retrain are the same path: the first model simply has no champion to beat.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from models.evaluate import evaluate
from models.features import FeatureConfig
from models.train import FraudModel, TrainParams, train_model
from models.training_set import TrainingFrame, build_training_frame

CP_K = 100


@dataclass(frozen=True)
class HoldoutSplit:
    """A training frame cut by time: fit on the past, judge on the most recent labelled days."""

    train: TrainingFrame
    holdout: TrainingFrame
    holdout_rows: pd.DataFrame  # tx_datetime, customer_id, is_fraud of the holdout rows
    holdout_start: datetime


def split_by_time(
    frame: TrainingFrame, transactions: pd.DataFrame, holdout_days: int
) -> HoldoutSplit:
    """The last `holdout_days` before the newest labelled transaction form the holdout."""
    info = (
        transactions.assign(transaction_id=transactions["transaction_id"].astype(str))
        .set_index("transaction_id")
        .loc[frame.transaction_ids, ["tx_datetime", "customer_id"]]
        .reset_index(drop=True)
    )
    start = info["tx_datetime"].max() - timedelta(days=holdout_days)
    is_hold = (info["tx_datetime"] >= start).to_numpy()
    ids = np.asarray(frame.transaction_ids)

    def part(mask: np.ndarray) -> TrainingFrame:
        return TrainingFrame(
            X=frame.X[mask].reset_index(drop=True),
            y=frame.y[mask],
            transaction_ids=ids[mask].tolist(),
        )

    rows = info[is_hold].reset_index(drop=True).assign(is_fraud=frame.y[is_hold])
    return HoldoutSplit(part(~is_hold), part(is_hold), rows, start.to_pydatetime())


def holdout_metrics(split: HoldoutSplit, score: np.ndarray) -> dict[str, float]:
    """AUC, AP, Brier and CP@100 on the holdout; NaN where the holdout lacks a class."""
    rows = split.holdout_rows.assign(score=score)
    if rows["is_fraud"].nunique() < 2:
        return {"roc_auc": float("nan"), "average_precision": float("nan")}
    return evaluate(rows, CP_K)


@dataclass(frozen=True)
class Challenger:
    model: FraudModel
    split: HoldoutSplit
    metrics: dict[str, float]


def fit_challenger(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: datetime,
    window_days: int,
    holdout_days: int,
    cfg: FeatureConfig,
    params: TrainParams | None = None,
) -> Challenger:
    """Build the training set known at `as_of`, fit on its past, score its recent holdout."""
    frame = build_training_frame(transactions, labels, as_of, window_days, cfg)
    split = split_by_time(frame, transactions, holdout_days)
    model = train_model(split.train.X, split.train.y, params)
    return Challenger(model, split, holdout_metrics(split, model.predict_proba(split.holdout.X)))
