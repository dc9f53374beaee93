"""The weekly post-verify audit sample (`pipeline.audit_sample`): after each week, a stratified
random sample of its automatic decisions opened as label-only cases; the `sync-reviews`
deployment delivers them to their Label Studio project like any other case."""

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from fraudloop.storage import open_session
from pipeline.audit_sample import SampleResult, open_week


@task(cache_policy=NO_CACHE)
def open_sample(rt: Runtime, week_end: datetime, now: datetime) -> SampleResult:
    with open_session(rt.db_url) as s, s.begin():
        return open_week(s, rt.policy, week_end, now)


@flow(name="audit-sample")
def audit_sample_flow(
    week_ending: datetime | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Sample the `report.weekly_days` before `week_ending`'s midnight (default: today's, UTC);
    a week already sampled opens nothing."""
    rt = runtime()
    now = now or rt.clock()
    result = open_sample(rt, week_ending or now, now)
    get_run_logger().info(
        "audit sample %s to %s: opened %s of %s (already sampled: %d)",
        f"{result.week_start:%Y-%m-%d}",
        f"{result.week_end:%Y-%m-%d}",
        result.opened,
        result.population,
        result.already_sampled,
    )
    return {
        "week_start": result.week_start.isoformat(),
        "week_end": result.week_end.isoformat(),
        "opened": result.opened,
        "population": result.population,
        "already_sampled": result.already_sampled,
    }
