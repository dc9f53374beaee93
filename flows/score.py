"""Score a micro-batch: validate, features, champion + SHAP, route, store, hand reviews to Label Studio."""

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from flows.tasks import champion, deliver_reviews
from fraudloop.feed import read_window
from fraudloop.storage import open_session
from models.scoring import ScoringModel
from pipeline.decide import BatchResult, score_batch
from pipeline.features import RunHistory


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


@flow(name="score-batch")
def score_flow(
    source: Path, start: datetime, end: datetime, now: datetime | None = None
) -> dict[str, Any]:
    """Score the transactions of [start, end) from a source file (parquet, or a JSONL drop)."""
    rt = runtime()
    now = now or end
    records = read_window(source, start, end)
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
