"""Score a micro-batch: validate, features, champion + SHAP, route, store, hand reviews to Label Studio."""

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from fraudloop.storage import open_session
from fraudloop.stream import inject_malformed as corrupt
from fraudloop.stream import read_window
from labeling.outbox import DeliveryResult, deliver_by_policy
from models.scoring import ScoringModel, load_model
from models.serving import BatchResult, RunHistory, score_batch


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def champion(rt: Runtime) -> ScoringModel:
    s = rt.settings
    return load_model(s.tracking_uri, s.model_name, "champion")


@task(cache_policy=NO_CACHE)
def decide(
    rt: Runtime, records: list[dict[str, Any]], model: ScoringModel | None, now: datetime
) -> BatchResult:
    """Validate, score, route and store, one transaction per chunk of the window (fallback rules
    if no model): memory stays bounded, and the chunks share one read of the history."""
    run, size = RunHistory(), rt.settings.score_chunk_rows
    results = []
    for start in range(0, len(records), size):
        with open_session(rt.db_url) as s, s.begin():
            results.append(
                score_batch(s, records[start : start + size], model, rt.policy, now, run)
            )
    return BatchResult.total(results)


@task(cache_policy=NO_CACHE)
def deliver_reviews(rt: Runtime, now: datetime) -> DeliveryResult:
    """Outbox to Label Studio; if it is down the cases stay pending and a later run delivers them."""
    try:
        client = rt.labelstudio()
        projects = rt.projects(client)
    except Exception as exc:  # any outage leaves the outbox for the next run
        get_run_logger().warning("Label Studio unavailable, reviews stay in the outbox: %s", exc)
        return DeliveryResult(error=str(exc))
    with open_session(rt.db_url) as s, s.begin():
        return deliver_by_policy(s, client, projects, rt.policy, now)


@flow(name="score-batch")
def score_flow(
    source: Path,
    start: datetime,
    end: datetime,
    now: datetime | None = None,
    inject_malformed: int = 0,
) -> dict[str, Any]:
    """Score the transactions of [start, end) from a source file.

    `inject_malformed` adds that many corrupted copies (demo and tests: the quarantine path).
    """
    rt = runtime()
    now = now or end
    records = corrupt(
        read_window(source, start, end), inject_malformed, seed=int(start.timestamp())
    )
    try:
        model = champion(rt)
    except Exception as exc:  # registry down or no champion: decisions go on under fallback rules
        get_run_logger().error("model unavailable, deciding with fallback rules: %s", exc)
        model = None
    result = decide(rt, records, model, now)
    if result.rejected:
        get_run_logger().warning("quarantined %d malformed transaction(s)", result.rejected)
    delivery = deliver_reviews(rt, now)
    return {**asdict(result), "delivered": delivery.delivered, "outbox_error": delivery.error}
