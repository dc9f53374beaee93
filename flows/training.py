"""Training tasks the retrain and first-train flows share: fit, compare, register, promote."""

from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime
from fraudloop import labels
from fraudloop.storage import open_session
from models.challenger import Challenger, fit_challenger, holdout_metrics, run_record
from models.governance import selection_strategy
from models.promotion import promote
from models.registry import champion_version, log_and_register
from models.scoring import load_model
from pipeline.features import model_config


@task(cache_policy=NO_CACHE)
def fit(rt: Runtime, as_of: datetime, window_days: int) -> Challenger:
    """The challenger, trained on what the store knew at `as_of`."""
    config = model_config(rt.policy)
    since = as_of - timedelta(days=window_days + config.features.history_days)
    with open_session(rt.db_url) as s:
        tx = labels.history(s, since=since, until=as_of)
        known = labels.labels(s, known_before=as_of)
    return fit_challenger(tx, known, as_of, window_days, rt.policy.learning.holdout_days, config)


@task(cache_policy=NO_CACHE)
def champion_metrics(rt: Runtime, challenger: Challenger) -> dict[str, float] | None:
    """The champion on the challenger's holdout (the same rows, the same features)."""
    s = rt.settings
    if champion_version(s.model_name, tracking_uri=s.tracking_uri) is None:
        return None
    model = load_model(s.tracking_uri, s.model_name)
    score = model.predict(challenger.split.holdout.X)["score"].to_numpy()
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
        challenger.split.train.X,
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
