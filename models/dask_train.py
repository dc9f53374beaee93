"""Train on a window that does not fit one process: features built on Dask workers, the booster
fitted with `xgboost.dask`, the same `FraudModel` out (registration, serving and SHAP unchanged).

Features, by entity. A customer's features read only that customer's transactions and a
terminal's only that terminal's (`models.features`; labels are per transaction), so the window
is built twice: shuffled by customer, where the customer columns (and the per-row ones) are
exact, and by terminal, where the terminal columns are; the two halves join on the transaction.
The terminal columns need no time slices here (unlike scoring, `flows.partitions`): every
transaction of the window is there before the build starts.

The fit, as `train_model`'s: the same booster params, the same rows in time order for the fit
and the calibration slice, the same seeded legit sample. To cut them the same way the driver
collects three small columns per row (time, id, label); the features stay on the workers. The
calibration slice's margins are collected too (one number a row) for the Platt fit. What
differs: the distributed quantile sketch cuts the histograms slightly differently, so the trees
are not bit-identical (the test holds the holdout AP within 0.005 of `train_model`'s).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask import delayed
from distributed import Client
from xgboost import dask as dxgb

from models.challenger import (
    Challenger,
    HoldoutSplit,
    holdout_metrics,
    holdout_span,
    label_counts,
)
from models.config import ModelConfig
from models.features import FeatureConfig, chronological_order, compute_features, feature_columns
from models.train import FraudModel, TrainParams, fit_and_calibration_rows, platt
from models.training_set import TrainingFrame, current_labels

TRAINER = "xgboost.dask"  # the MLflow param `trainer` of a model fitted here
TIME, ID, CUSTOMER, LABEL = "tx_datetime", "transaction_id", "customer_id", "_label"
UNUSED, FIT, CALIBRATE = 0, 1, 2  # a row's role in the fit


def terminal_columns(cfg: FeatureConfig) -> list[str]:
    """The features that read other customers' transactions (the terminal's)."""
    return [c for c in feature_columns(cfg) if c.startswith("terminal_id_")]


def build_training_frame_dask(
    transactions: dd.DataFrame,
    labels: pd.DataFrame,
    as_of: datetime,
    window_days: int,
    cfg: FeatureConfig,
) -> dd.DataFrame:
    """`build_training_frame` as a Dask frame, in no particular order: id, time, customer, label
    (`LABEL`) and the features of each transaction in the window with a label known by `as_of`.

    `transactions` must reach `cfg.history_days` before the window; `labels` (every label event
    known by `as_of`) is small and goes to every partition.
    """
    start = as_of - timedelta(days=window_days)
    when = transactions[TIME]
    tx = transactions[(when >= start - timedelta(days=cfg.history_days)) & (when < as_of)]
    verdict = current_labels(labels, as_of)
    terminal = terminal_columns(cfg)
    customer = [c for c in feature_columns(cfg) if c not in terminal]
    by_customer = tx.shuffle(on=CUSTOMER).map_partitions(
        _side, labels, verdict, start, cfg, customer, True, meta=_meta(customer, True)
    )
    by_terminal = tx.shuffle(on="terminal_id").map_partitions(
        _side, labels, verdict, start, cfg, terminal, False, meta=_meta(terminal, False)
    )
    frame = by_customer.merge(by_terminal, on=ID, how="inner")
    return frame[[ID, TIME, CUSTOMER, LABEL, *feature_columns(cfg)]]


def _meta(columns: list[str], keys: bool) -> pd.DataFrame:
    key_types = {ID: "object", TIME: "datetime64[ns]", CUSTOMER: "object", LABEL: "int64"}
    types = key_types if keys else {ID: "object"}
    return pd.DataFrame(
        {c: pd.Series(dtype=t) for c, t in types.items()}
        | {c: pd.Series(dtype=float) for c in columns}
    )


def _side(  # noqa: PLR0913 - one map_partitions call's arguments
    part: pd.DataFrame,
    labels: pd.DataFrame,
    verdict: pd.Series,
    start: datetime,
    cfg: FeatureConfig,
    columns: list[str],
    keys: bool,
) -> pd.DataFrame:
    """The `columns` of the partition's labelled window rows: exact for the entity every
    transaction of which is in the partition. `keys`: also time, customer and label."""
    is_new = (part[TIME] >= start).to_numpy()
    window = part[is_new]
    if window.empty:
        return _meta(columns, keys)
    window = window.iloc[chronological_order(window)]
    features = compute_features(part[~is_new], window, labels, cfg)
    ids = window[ID].astype(str).to_numpy()
    position = verdict.index.get_indexer(ids)
    known = position >= 0
    out = pd.DataFrame({ID: ids[known]})
    if keys:
        out[TIME] = window[TIME].to_numpy()[known]
        out[CUSTOMER] = window[CUSTOMER].to_numpy()[known]
        out[LABEL] = verdict.to_numpy(int)[position[known]]
    return pd.concat([out, features.loc[known, columns].reset_index(drop=True)], axis=1)


@dataclass(frozen=True)
class _Keys:
    """Per row of a persisted frame, in partition order: what cuts the fit by time."""

    frame: pd.DataFrame  # TIME, ID, LABEL
    sizes: list[int]  # rows per partition

    @classmethod
    def of(cls, client: Client, frame: dd.DataFrame) -> "_Keys":
        parts = client.compute([delayed(_key_columns)(p) for p in frame.to_delayed()], sync=True)
        return cls(pd.concat(parts, ignore_index=True), [len(p) for p in parts])

    def roles(self, params: TrainParams, settled_before: datetime) -> np.ndarray:
        """FIT, CALIBRATE or UNUSED per row, as `train_model` would pick them in time order
        (rows after `settled_before` are its `fit_only`)."""
        order = chronological_order(self.frame)
        y = self.frame[LABEL].to_numpy(int)[order]
        fresh = (self.frame[TIME] >= settled_before).to_numpy()[order]
        fit, calibration = fit_and_calibration_rows(y, params, fresh)
        roles = np.full(len(y), UNUSED)
        roles[order[fit]] = FIT
        roles[order[calibration]] = CALIBRATE
        return roles

    def per_partition(self, values: np.ndarray) -> list[np.ndarray]:
        return np.split(values, np.cumsum(self.sizes)[:-1])


def _key_columns(part: pd.DataFrame) -> pd.DataFrame:
    return part[[TIME, ID, LABEL]]


def _rows(part: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    return part[keep]


def train_model_dask(
    client: Client,
    frame: dd.DataFrame,
    features: list[str],
    params: TrainParams,
    settled_before: datetime,
) -> FraudModel:
    """`train_model` on a Dask frame with TIME, ID, LABEL and `features` (any row order):
    the same fit and calibration rows, the booster fitted on the workers."""
    frame = client.persist(frame)
    keys = _Keys.of(client, frame)
    masks = keys.per_partition(keys.roles(params, settled_before))
    parts = frame.to_delayed()
    meta = frame._meta

    def chosen(role: int) -> dd.DataFrame:
        picked = [delayed(_rows)(p, m == role) for p, m in zip(parts, masks, strict=True)]
        return dd.from_delayed(picked, meta=meta, verify_meta=False)

    fit, calibration = chosen(FIT), chosen(CALIBRATE)
    matrix = dxgb.DaskQuantileDMatrix(client, fit[features], fit[LABEL])
    booster = dxgb.train(
        client, params.booster_params(features), matrix, num_boost_round=params.n_estimators
    )["booster"]
    margin = dxgb.predict(client, booster, calibration[features], output_margin=True)
    margin = np.asarray(client.compute(margin, sync=True))
    y = keys.frame[LABEL].to_numpy(int)
    y_calibration = np.concatenate(
        [part[m == CALIBRATE] for part, m in zip(keys.per_partition(y), masks, strict=True)]
    )
    slope, intercept = platt(margin, y_calibration)
    return FraudModel(booster=booster, slope=slope, intercept=intercept, features=features)


def fit_challenger_dask(  # noqa: PLR0913 - `fit_challenger`'s arguments and the client
    client: Client,
    transactions: dd.DataFrame,
    labels: pd.DataFrame,
    as_of: datetime,
    window_days: int,
    holdout_days: int,
    config: ModelConfig,
) -> Challenger:
    """`fit_challenger` on Dask. The holdout (the last `holdout_days` of settled payments, as
    `split_by_time`'s) is collected: the champion scores it in the driver. The training part's
    features stay on the workers, so its `TrainingFrame` holds their columns without rows (its
    labels and ids are all there)."""
    frame = client.persist(
        build_training_frame_dask(transactions, labels, as_of, window_days, config.features)
    )
    settled_before = as_of - timedelta(days=config.features.delay_days)
    latest_settled, latest = client.compute(
        [frame[TIME].where(frame[TIME] < settled_before).max(), frame[TIME].max()], sync=True
    )
    start, cutoff = holdout_span(
        pd.Timestamp(latest_settled), pd.Timestamp(latest), settled_before, holdout_days
    )
    is_hold = (frame[TIME] < cutoff) & (frame[TIME] >= start)
    held = _in_time_order(client.compute(frame[is_hold], sync=True))
    keys = _in_time_order(client.compute(frame[~is_hold][[TIME, ID, LABEL]], sync=True))
    names = feature_columns(config.features)
    train = client.persist(frame[~is_hold])
    del frame  # the workers keep the fit's rows, not the window's as well
    model = train_model_dask(client, train, names, config.training, cutoff)
    holdout = TrainingFrame(
        X=held[names], y=held[LABEL].to_numpy(int), transaction_ids=held[ID].tolist()
    )
    fitted = TrainingFrame(
        X=pd.DataFrame(columns=names, dtype=float),
        y=keys[LABEL].to_numpy(int),
        transaction_ids=keys[ID].tolist(),
    )
    rows = held[[TIME, CUSTOMER]].assign(is_fraud=holdout.y)
    fresh = (keys[TIME] >= cutoff).to_numpy()
    split = HoldoutSplit(fitted, holdout, rows, start.to_pydatetime(), fresh)
    metrics = holdout_metrics(split, model.predict_proba(holdout.X))
    counts = label_counts(labels, fitted.transaction_ids, as_of)
    return Challenger(model, split, metrics, config, counts, trainer=TRAINER)


def _in_time_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[chronological_order(frame)].reset_index(drop=True)
