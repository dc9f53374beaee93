"""Score a window: validate, features, champion + SHAP, route, store, hand reviews to Label Studio.

In one process, or partitioned over Dask workers (`FRAUDLOOP_DASK_WORKERS`, or the flow's
`workers`): the same task scores a partition either way (`flows.partitions`: by customer, in
slices no longer than the label delay), so both store the same decisions. Appends to the audit
chain are serialized at the store (`fraudloop.audit`): one chain, whichever worker appends.
"""

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from flows.champion import champion
from flows.delivery import deliver_reviews
from flows.partitions import Partition, plan, whole, worker_history
from flows.runtime import Runtime, runtime
from flows.scale_out import dask_runner, tasks_report_here
from flows.worker_model import ModelRef, loaded
from fraudloop.errors import FraudloopError
from fraudloop.feed import read_window
from fraudloop.storage import open_session
from models.scoring import ScoringModel
from pipeline.decide import BatchResult, score_batch
from pipeline.features import RunHistory, feature_config


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def decide(
    rt: Runtime, part: Partition, model: ScoringModel | ModelRef | None, now: datetime
) -> BatchResult:
    """Validate, score, route and store a partition, one transaction per chunk (fallback rules
    if no model; a worker is sent where the model is): memory stays bounded, and the chunks
    share one read of the history. A retry stores nothing twice (decisions and audit events
    are idempotent)."""
    run = RunHistory() if part.alone else worker_history(part)
    if isinstance(model, ModelRef):
        model = loaded(model)
    records, size = part.records, rt.settings.score_chunk_rows
    results = []
    for start in range(0, len(records), size):
        with open_session(rt.db_url) as s, s.begin():
            results.append(
                score_batch(s, records[start : start + size], model, rt.policy, now, run)
            )
    return BatchResult.total(results)


def decide_on_dask(
    rt: Runtime,
    records: list[dict[str, Any]],
    model: ScoringModel | None,
    now: datetime,
    workers: int,
) -> BatchResult:
    """The window's partitions on Dask, slice after slice: all are submitted at once, each
    slice's waiting for the one before (`flows.partitions`)."""
    slices = plan(records, workers, feature_config(rt.policy).delay_days)
    if not slices:
        return BatchResult.total([])
    sent = None if model is None else ModelRef.of(model, rt.settings.tracking_uri)
    futures: list[PrefectFuture[BatchResult]] = []
    with dask_runner(rt.settings, workers) as runner, tasks_report_here():
        before: list[PrefectFuture[BatchResult]] = []
        for parts in slices:
            params = [{"rt": rt, "part": p, "model": sent, "now": now} for p in parts]
            before = [runner.submit(decide, p, wait_for=before) for p in params]
            futures += before
        return BatchResult.total([f.result() for f in futures])


@flow(name="score-batch")
def score_flow(
    source: Path,
    start: datetime,
    end: datetime,
    now: datetime | None = None,
    workers: int | None = None,
    reruns: int = 0,
) -> dict[str, Any]:
    """Score the transactions of [start, end) from a source file (parquet, or a JSONL drop),
    in one process or over `workers` Dask workers (default `FRAUDLOOP_DASK_WORKERS`).
    `reruns`: how often a crash had this run started again (the server profile's automation
    counts them): past the policy's `schedules.crashed_reruns_max` the run fails at once, and
    a failed run is not started again."""
    rt = runtime()
    limit = rt.policy.schedules.crashed_reruns_max
    if reruns > limit:
        raise FraudloopError(
            f"score-batch of {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} has crashed {reruns} "
            f"times and schedules.crashed_reruns_max allows {limit} reruns: not run again; see "
            "why it crashes in the Prefect UI, then run it by hand"
        )
    now = now or end
    workers = rt.settings.dask_workers if workers is None else workers
    records = read_window(source, start, end)
    try:
        model = champion(rt)
    except Exception as exc:  # registry down or no champion: decisions go on under fallback rules
        get_run_logger().error("model unavailable, deciding with fallback rules: %s", exc)
        model = None
    if workers:
        result = decide_on_dask(rt, records, model, now, workers)
    else:
        result = decide(rt, whole(records), model, now)
    if result.rejected:
        get_run_logger().warning("quarantined %d malformed transaction(s)", result.rejected)
    delivery = deliver_reviews(rt, now)
    return {**asdict(result), "delivered": delivery.delivered, "outbox_error": delivery.error}
