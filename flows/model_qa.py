"""The monthly model QA (`monthly-model-qa`): performance, calibration and bias by cohort, drift
over the month, the champion's history; HTML, PDF and Markdown under reports/, logged to
MLflow."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from fraudloop.storage import open_session
from models.features import FEATURE_COLUMNS
from models.governance import list_versions
from models.registry import champion_history
from monitoring import model_qa, qa_data, week_events
from monitoring.outcomes import outcomes
from monitoring.publish import log_report, write_document
from monitoring.segments import segment_columns


@task(cache_policy=NO_CACHE)
def read_month(
    rt: Runtime, start: datetime, end: datetime
) -> tuple[qa_data.Period, qa_data.SegmentInputs]:
    with open_session(rt.db_url) as s:
        period = qa_data.read_period(s, start, end)
        return period, qa_data.read_segments(s, start, end, rt.policy.report.segments)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def registry_versions(rt: Runtime) -> list[model_qa.VersionRow]:
    s = rt.settings
    order = {
        v: i + 1 for i, v in enumerate(champion_history(s.model_name, tracking_uri=s.tracking_uri))
    }
    return [
        model_qa.VersionRow(
            version=v.version,
            created=v.created,
            aliases=list(v.aliases),
            metrics=v.metrics,
            window=v.window,
            champion_order=order.get(v.version),
        )
        for v in list_versions(s.model_name, s.tracking_uri)
    ]


@task(cache_policy=NO_CACHE)
def publish_month(
    rt: Runtime,
    period: qa_data.Period,
    segments: qa_data.SegmentInputs,
    versions: list[model_qa.VersionRow],
    as_of: datetime,
) -> dict[str, Path]:
    policy, s = rt.policy, rt.settings
    d = period.decisions
    outcome = outcomes(d, period.labels, as_of, policy.learning.chargeback_delay_days)
    seg = segment_columns(
        d, segments.first_seen, segments.pair_first, segments.terminal_risk, policy.report.segments
    )
    cohorts = model_qa.cohort_table(d, outcome, seg)
    doc = model_qa.model_qa_document(
        period.start,
        as_of,
        policy,
        cohorts,
        model_qa.largest_gaps(cohorts, policy.report.min_cohort_outcomes),
        model_qa.weekly_scores(d, period.start, policy.report.weekly_days),
        model_qa.read_drift_days(s.reports_dir, period.start, as_of, FEATURE_COLUMNS),
        versions,
        week_events.move_rows(period.events),
    )
    return write_document(doc, s.reports_dir, f"model-qa-{as_of:%Y-%m-%d}")


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def log_month(rt: Runtime, files: dict[str, Path], as_of: datetime) -> str:
    s = rt.settings
    artifacts = None if s.tracking_uri.startswith("http") else s.mlflow_artifacts
    tags = {"report": "model-qa", "period_end": as_of.isoformat(), "policy": rt.policy.version}
    return log_report(
        s.tracking_uri, artifacts, f"model-qa-{as_of:%Y-%m-%d}", list(files.values()), {}, tags
    )


@flow(name="model-qa")
def model_qa_flow(as_of: datetime | None = None) -> dict[str, Any]:
    """The model QA over the policy's `report.monthly_days` up to `as_of`."""
    rt = runtime()
    as_of = as_of or rt.clock()
    start = as_of - timedelta(days=rt.policy.report.monthly_days)
    period, segments = read_month(rt, start, as_of)
    files = publish_month(rt, period, segments, registry_versions(rt), as_of)
    return {
        "report": files["html"],
        "pdf": files["pdf"],
        "markdown": files["markdown"],
        "mlflow_run": log_month(rt, files, as_of),
    }
