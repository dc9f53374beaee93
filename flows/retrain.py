"""Retrain on reviewer labels plus the chargebacks that have arrived; promote only a winner."""

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from fraudloop import audit, labels
from fraudloop.storage import open_session
from models.challenger import Challenger, fit_challenger, holdout_metrics
from models.features import FeatureConfig
from models.registry import champion_version, log_and_register, promote_if_better
from models.scoring import load_model


@task(cache_policy=NO_CACHE)
def fit(rt: Runtime, as_of: datetime, window_days: int) -> tuple[Challenger, int]:
    """The challenger and how many reviewer labels its training rows carry."""
    learning = rt.policy.learning
    cfg = FeatureConfig(delay_days=learning.chargeback_delay_days)
    with open_session(rt.db_url) as s:
        tx = labels.history(
            s, since=as_of - timedelta(days=window_days + cfg.history_days), until=as_of
        )
        known = labels.labels(s, known_before=as_of)
    challenger = fit_challenger(tx, known, as_of, window_days, learning.holdout_days, cfg)
    reviewed = set(known.loc[known["source"] == "review", "transaction_id"])
    return challenger, len(reviewed.intersection(challenger.split.train.transaction_ids))


@task(cache_policy=NO_CACHE)
def champion_metrics(rt: Runtime, challenger: Challenger) -> dict[str, float] | None:
    """The champion on the challenger's holdout (the same rows, the same features)."""
    s = rt.settings
    if champion_version(s.model_name, tracking_uri=s.tracking_uri) is None:
        return None
    champion = load_model(s.tracking_uri, s.model_name)
    score = champion.predict(challenger.split.holdout.X)["score"].to_numpy()
    return holdout_metrics(challenger.split, score)


@task(cache_policy=NO_CACHE)
def register_and_judge(
    rt: Runtime,
    challenger: Challenger,
    champion: dict[str, float] | None,
    as_of: datetime,
    window_days: int,
    reviewed_in_training: int,
) -> dict[str, Any]:
    """Log + register the challenger, move `champion` only if it wins; audit the decision."""
    s, learning = rt.settings, rt.policy.learning
    split = challenger.split
    window = {
        "start": (as_of - timedelta(days=window_days)).isoformat(),
        "end": as_of.isoformat(),
        "holdout_start": split.holdout_start.isoformat(),
        "n_train": str(len(split.train.y)),
        "n_holdout": str(len(split.holdout.y)),
        "reviewed_labels_in_training": str(reviewed_in_training),
    }
    metrics = {f"holdout_{k}": v for k, v in challenger.metrics.items() if not math.isnan(v)}
    params = {
        "window_days": window_days,
        "holdout_days": learning.holdout_days,
        "policy": rt.policy.version,
    }
    version = log_and_register(
        challenger.model, split.train.X, metrics, params, window, s.tracking_uri, s.model_name
    )
    metric = learning.promotion_metric
    mine = challenger.metrics.get(metric, float("nan"))
    theirs = champion.get(metric) if champion else None
    if math.isnan(mine) or (theirs is not None and math.isnan(theirs)):
        mine, theirs = (
            -math.inf,
            (theirs if theirs is not None and not math.isnan(theirs) else None),
        )
    result = promote_if_better(
        s.model_name,
        version,
        mine,
        theirs,
        learning.promotion_min_gain,
        tracking_uri=s.tracking_uri,
    )
    with open_session(rt.db_url) as session, session.begin():
        audit.append(
            session,
            [
                audit.event(
                    f"promotion:{s.model_name}:{version}",
                    "promotion" if result.promoted else "promotion_rejected",
                    "retrain-flow",
                    datetime.now(UTC).replace(tzinfo=None),
                    model_version=str(version),
                    reason=result.reason,
                    champion_version=result.champion_version,
                    previous_champion=result.previous_champion,
                    metric=metric,
                ),
            ],
        )
    return {
        "version": version,
        "promoted": result.promoted,
        "champion_version": result.champion_version,
        "reason": result.reason,
        "metrics": challenger.metrics,
        "champion_metrics": champion,
        "n_train": len(split.train.y),
        "reviewed_labels_in_training": reviewed_in_training,
        "training_ids": split.train.transaction_ids,
    }


def challenge(rt: Runtime, as_of: datetime, window_days: int | None) -> dict[str, Any]:
    """Fit, compare with the champion, register, promote if better (shared with `train`)."""
    window_days = window_days or rt.policy.learning.train_window_days
    challenger, reviewed = fit(rt, as_of, window_days)
    return register_and_judge(
        rt, challenger, champion_metrics(rt, challenger), as_of, window_days, reviewed
    )


@flow(name="retrain")
def retrain_flow(as_of: datetime | None = None, window_days: int | None = None) -> dict[str, Any]:
    """Triggered by data scientists or on a schedule; returns what happened to the registry."""
    return challenge(runtime(), as_of or datetime.now(UTC).replace(tzinfo=None), window_days)
