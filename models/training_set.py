"""The retraining set: what a model could have learnt at a given moment, and nothing more."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from models.features import DEFAULT_CONFIG, FeatureConfig, chronological_order, compute_features


@dataclass(frozen=True)
class TrainingFrame:
    """Features and labels in time order, with the transaction ids that produced them."""

    X: pd.DataFrame
    y: np.ndarray
    transaction_ids: list[str]


def current_labels(labels: pd.DataFrame, as_of: datetime) -> pd.Series:
    """Latest verdict per transaction among label events known strictly before `as_of`."""
    known = labels[labels["known_at"] < as_of]
    latest = known.sort_values(["known_at", "is_fraud"], kind="stable").drop_duplicates(
        "transaction_id", keep="last"
    )
    return latest.set_index("transaction_id")["is_fraud"].astype(int)


def build_training_frame(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: datetime,
    window_days: int,
    cfg: FeatureConfig = DEFAULT_CONFIG,
) -> TrainingFrame:
    """Transactions in [as_of - window_days, as_of) whose label is known by `as_of`.

    Reviewer labels count as soon as they are given, chargebacks once they arrive; features of
    each row use the transactions before it and only the labels known before its own time.
    """
    start = as_of - timedelta(days=window_days)
    when = transactions["tx_datetime"]
    window = transactions[(when >= start) & (when < as_of)]
    window = window.iloc[chronological_order(window)]
    window = window.assign(_id=window["transaction_id"].astype(str))
    history = transactions[(when < start) & (when >= start - timedelta(days=cfg.history_days))]
    features = compute_features(history, window, labels, cfg)
    verdict = current_labels(labels, as_of)
    position = verdict.index.get_indexer(window["_id"])  # one hash lookup per row; -1: unknown
    known = position >= 0
    return TrainingFrame(
        X=features[known].reset_index(drop=True),
        y=verdict.to_numpy(int)[position[known]],
        transaction_ids=window.loc[known, "_id"].tolist(),
    )
