"""Train a challenger on what is known now and judge it against the champion on later data.

Train and retrain are the same path: the first model simply has no champion to beat.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from models.config import ModelConfig
from models.evaluate import evaluate
from models.train import FraudModel, train_model
from models.training_set import TrainingFrame, build_training_frame

CP_K = 100
TRAINER = "xgboost"  # the MLflow param `trainer`: one process (`models.dask_train` on Dask)
ROUTER_ONLY = "router-only"  # the selection strategy of a loop that reviews only what it routes
NO_PARENT = "none"
PARENT_TAG, POLICY_TAG, STRATEGY_TAG = "parent", "policy", "selection_strategy"
LABELS_TAG = "labels."  # + source: training rows with a label from that source


@dataclass(frozen=True)
class HoldoutSplit:
    """A training frame cut by time: fit on the past, judge on the most recent settled days."""

    train: TrainingFrame
    holdout: TrainingFrame
    holdout_rows: pd.DataFrame  # tx_datetime, customer_id, is_fraud of the holdout rows
    holdout_start: datetime
    # per train row: labelled before its chargeback window closed (a reviewer's answer), so
    # among payments someone chose; the booster fits on them, they never calibrate
    fresh: np.ndarray


def split_by_time(
    frame: TrainingFrame, transactions: pd.DataFrame, holdout_days: int, settled_before: datetime
) -> HoldoutSplit:
    """The last `holdout_days` of settled payments (made before `settled_before`, when every
    payment's label is in) form the holdout. Later payments carry a label only if someone
    reviewed them, mostly ones a model chose: judging a challenger, or calibrating it, on them
    would favour whatever ranks the chosen ones well, so they only train. Without a settled
    payment, the window's latest days are the holdout."""
    info = (
        transactions.assign(transaction_id=transactions["transaction_id"].astype(str))
        .set_index("transaction_id")
        .loc[frame.transaction_ids, ["tx_datetime", "customer_id"]]
        .reset_index(drop=True)
    )
    when = info["tx_datetime"]
    start, cutoff = holdout_span(
        when[when < settled_before].max(), when.max(), settled_before, holdout_days
    )
    settled = (when < cutoff).to_numpy()
    is_hold = settled & (when >= start).to_numpy()
    ids = np.asarray(frame.transaction_ids)

    def part(mask: np.ndarray) -> TrainingFrame:
        return TrainingFrame(
            X=frame.X[mask].reset_index(drop=True),
            y=frame.y[mask],
            transaction_ids=ids[mask].tolist(),
        )

    rows = info[is_hold].reset_index(drop=True).assign(is_fraud=frame.y[is_hold])
    return HoldoutSplit(
        part(~is_hold), part(is_hold), rows, start.to_pydatetime(), ~settled[~is_hold]
    )


def holdout_span(
    latest_settled: pd.Timestamp, latest: pd.Timestamp, settled_before: datetime, holdout_days: int
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(holdout start, settled cutoff) from the newest settled payment (NaT: none) and the
    newest of all: the holdout is the settled rows from the start, a settled row is one before
    the cutoff, and with nothing settled every row counts as settled. Both trainers
    (`models.dask_train`) cut by it."""
    if pd.isna(latest_settled):
        return latest - timedelta(days=holdout_days), pd.Timestamp.max
    return latest_settled - timedelta(days=holdout_days), pd.Timestamp(settled_before)


def holdout_metrics(split: HoldoutSplit, score: np.ndarray) -> dict[str, float]:
    """AUC, AP, Brier and CP@100 on the holdout; NaN where the holdout lacks a class."""
    rows = split.holdout_rows.assign(score=score)
    if rows["is_fraud"].nunique() < 2:  # noqa: PLR2004 - fraud and legit
        return {"roc_auc": float("nan"), "average_precision": float("nan")}
    return evaluate(rows, CP_K)


@dataclass(frozen=True)
class Challenger:
    model: FraudModel
    split: HoldoutSplit
    metrics: dict[str, float]
    config: ModelConfig  # as trained: features with the policy's delay, training params
    label_counts: dict[str, int]  # training rows with a label from each source known at as_of
    trainer: str = TRAINER  # which fit made the model

    @property
    def reviewed_in_training(self) -> int:
        """Training rows whose label came from a router review."""
        return self.label_counts.get("review", 0)


@dataclass(frozen=True)
class RunRecord:
    """What the MLflow run of a challenger logs: params (the run's and the whole model config,
    `ModelConfig.as_params`), metrics (NaN left out), data window, and the lineage tags (also
    params) its registered version carries: parent, policy, selection strategy, label counts."""

    params: dict[str, object]
    metrics: dict[str, float]
    window: dict[str, str]
    tags: dict[str, str]


def lineage_tags(
    label_counts: dict[str, int], parent: int | None, policy: str, strategy: str
) -> dict[str, str]:
    """What a version was made from, as registry tags (string values, one key per source)."""
    counts = {f"{LABELS_TAG}{source}": str(n) for source, n in sorted(label_counts.items())}
    parent_tag = NO_PARENT if parent is None else str(parent)
    return {PARENT_TAG: parent_tag, POLICY_TAG: policy, STRATEGY_TAG: strategy, **counts}


def run_record(
    challenger: Challenger,
    as_of: datetime,
    window_days: int,
    holdout_days: int,
    policy: str,
    *,
    parent: int | None = None,
    strategy: str = ROUTER_ONLY,
) -> RunRecord:
    split = challenger.split
    window = {
        "start": (as_of - timedelta(days=window_days)).isoformat(),
        "end": as_of.isoformat(),
        "holdout_start": split.holdout_start.isoformat(),
        "n_train": str(len(split.train.y)),
        "n_holdout": str(len(split.holdout.y)),
        "reviewed_labels_in_training": str(challenger.reviewed_in_training),
    }
    metrics = {f"holdout_{k}": v for k, v in challenger.metrics.items() if not math.isnan(v)}
    params: dict[str, object] = {
        "window_days": window_days,
        "holdout_days": holdout_days,
        "policy": policy,
        "trainer": challenger.trainer,
        **challenger.config.as_params(),
    }
    tags = lineage_tags(challenger.label_counts, parent, policy, strategy)
    return RunRecord({**params, **tags}, metrics, window, tags)


def label_counts(labels: pd.DataFrame, training_ids: list[str], as_of: datetime) -> dict[str, int]:
    """Training rows with a label event from each source known before `as_of`, every source
    present (0 included); a row reviewed and later charged back counts under both."""
    known = labels.loc[labels["known_at"] < as_of, ["transaction_id", "source"]]
    used = known[known["transaction_id"].astype(str).isin(set(training_ids))]
    rows = used.groupby("source")["transaction_id"].nunique()
    return {str(source): int(rows.get(source, 0)) for source in known["source"].unique()}


def fit_challenger(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: datetime,
    window_days: int,
    holdout_days: int,
    config: ModelConfig,
) -> Challenger:
    """Build the training set known at `as_of`, fit on its past, score its recent holdout."""
    frame = build_training_frame(transactions, labels, as_of, window_days, config.features)
    return fit_on_frame(frame, transactions, labels, as_of, holdout_days, config)


def fit_on_frame(  # noqa: PLR0913 - the training set and where it came from
    frame: TrainingFrame,
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: datetime,
    holdout_days: int,
    config: ModelConfig,
) -> Challenger:
    """`fit_challenger` on a training frame already built: the replay benchmark keeps each
    day's features as scoring computed them, which are the ones `build_training_frame` would
    compute again (the features of a row use only labels known before its own time)."""
    settled_before = as_of - timedelta(days=config.features.delay_days)
    split = split_by_time(frame, transactions, holdout_days, settled_before)
    model = train_model(split.train.X, split.train.y, config.training, split.fresh)
    metrics = holdout_metrics(split, model.predict_proba(split.holdout.X))
    counts = label_counts(labels, split.train.transaction_ids, as_of)
    return Challenger(model, split, metrics, config, counts)
