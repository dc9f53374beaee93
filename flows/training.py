"""Training tasks the retrain and first-train flows share: fit, compare, register, promote."""

from datetime import datetime, timedelta
from typing import Any

import dask.dataframe as dd
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime
from flows.scale_out import dask_client, training_workers
from fraudloop import labels
from fraudloop.storage import open_session
from models.challenger import Challenger, fit_challenger, holdout_metrics, run_record
from models.dask_train import fit_challenger_dask
from models.governance import selection_strategy
from models.promotion import promote
from models.registry import champion_version, log_and_register
from models.scoring import load_model
from pipeline.features import model_config


@task(cache_policy=NO_CACHE)
def fit(rt: Runtime, as_of: datetime, window_days: int, workers: int | None = None) -> Challenger:
    """The challenger, trained on what the store knew at `as_of`: in this process, or on Dask
    (`workers`, default `FRAUDLOOP_DASK_WORKERS` or a scheduler at `FRAUDLOOP_DASK_ADDRESS`)."""
    config = model_config(rt.policy)
    holdout_days = rt.policy.learning.holdout_days
    since = as_of - timedelta(days=window_days + config.features.history_days)
    n_workers = training_workers(rt.settings, workers)
    with open_session(rt.db_url) as s:
        known = labels.labels(s, known_before=as_of)
        tx = None if n_workers else labels.history(s, since=since, until=as_of)
    if tx is not None:
        return fit_challenger(tx, known, as_of, window_days, holdout_days, config)
    with dask_client(rt.settings, n_workers) as client:
        days = stored_days(rt.db_url, since, as_of)
        return fit_challenger_dask(client, days, known, as_of, window_days, holdout_days, config)


def stored_days(db_url: str, since: datetime, until: datetime) -> dd.DataFrame:
    """The store's transactions of [since, until) as a Dask frame of one day a partition, each
    read by the worker that holds it: the window never passes through this process."""
    starts = pd.date_range(since, until, freq="D", inclusive="left").to_pydatetime().tolist()
    meta = pd.DataFrame({c: pd.Series(dtype=t) for c, t in labels.HISTORY_TYPES.items()})
    return dd.from_map(_stored_day, starts, db_url=db_url, until=until, meta=meta)


def _stored_day(start: datetime, db_url: str, until: datetime) -> pd.DataFrame:
    with open_session(db_url) as s:
        return labels.history(s, since=start, until=min(start + timedelta(days=1), until))


@task(cache_policy=NO_CACHE)
def champion_metrics(rt: Runtime, challenger: Challenger) -> dict[str, float] | None:
    """The champion on the challenger's holdout (the same rows, the same features)."""
    s = rt.settings
    if champion_version(s.model_name, tracking_uri=s.tracking_uri) is None:
        return None
    model = load_model(s.tracking_uri, s.model_name)
    score = model.score(challenger.split.holdout.X)
    return holdout_metrics(challenger.split, score)


@task(cache_policy=NO_CACHE)
def register_and_judge(
    rt: Runtime,
    challenger: Challenger,
    champion: dict[str, float] | None,
    as_of: datetime,
    window_days: int,
) -> dict[str, Any]:
    """Log + register the challenger, move `champion` only if it wins (audited either way)."""
    s, policy = rt.settings, rt.policy
    learning = policy.learning
    parent = champion_version(s.model_name, tracking_uri=s.tracking_uri)
    run = run_record(
        challenger,
        as_of,
        window_days,
        learning.holdout_days,
        policy.version,
        parent=parent,
        strategy=selection_strategy(policy),
    )
    version = log_and_register(
        challenger.model,
        challenger.split.holdout.X,  # the signature's example: a Dask fit keeps no train rows
        run.metrics,
        run.params,
        run.window,
        s.tracking_uri,
        s.model_name,
        config=challenger.config,
        tags=run.tags,
    )
    with open_session(rt.db_url) as session, session.begin():
        result = promote(
            session,
            s.model_name,
            version,
            learning.promotion_metric,
            challenger.metrics,
            champion,
            learning.promotion_min_gain,
            s.tracking_uri,
            rt.clock(),
        )
    return {
        "version": version,
        "promoted": result.promoted,
        "champion_version": result.champion_version,
        "reason": result.reason,
        "metrics": challenger.metrics,
        "champion_metrics": champion,
        "n_train": len(challenger.split.train.y),
        "reviewed_labels_in_training": challenger.reviewed_in_training,
        "label_counts": challenger.label_counts,
        "parent": parent,
        "training_ids": challenger.split.train.transaction_ids,
    }
