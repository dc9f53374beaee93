"""Drift (Evidently), overrides, SLAs and alerts over recent decisions, written as the QA report."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from fraudloop import decisions
from fraudloop.alerts import LogSink
from fraudloop.storage import AuditEvent, count_by, open_session
from models.features import FEATURE_COLUMNS
from models.registry import registry_summary
from models.scoring import load_model
from monitoring.alerting import raise_alerts
from monitoring.drift import DriftSummary, drift_report
from monitoring.metrics import period_review
from monitoring.report import ReportSummary, build_report
from pipeline.features import feature_config, window_features


@task(cache_policy=NO_CACHE)
def drift(rt: Runtime, as_of: datetime, out_dir: Path) -> DriftSummary:
    m = rt.policy.monitoring
    split = as_of - timedelta(days=m.current_days)
    cfg = feature_config(rt.policy)
    with open_session(rt.db_url) as s:
        reference = window_features(s, split - timedelta(days=m.reference_days), split, cfg)
        current = window_features(s, split, as_of, cfg)
    model = load_model(rt.settings.tracking_uri, rt.settings.model_name, "champion")
    reference["score"] = model.predict(reference[FEATURE_COLUMNS])["score"].to_numpy()
    current["score"] = model.predict(current[FEATURE_COLUMNS])["score"].to_numpy()
    stem = f"drift-{as_of:%Y-%m-%d}"
    return drift_report(
        reference, current, FEATURE_COLUMNS, out_dir / f"{stem}.html", out_dir / f"{stem}.json"
    )


@task(cache_policy=NO_CACHE)
def qa_report(
    rt: Runtime, as_of: datetime, drift_summary: DriftSummary | None, out_dir: Path
) -> Path:
    policy = rt.policy
    start = as_of - timedelta(days=policy.monitoring.current_days)
    with open_session(rt.db_url) as s, s.begin():
        metrics, alerts = period_review(decisions.monitoring_frame(s), policy, as_of)
        raise_alerts(s, alerts, LogSink(), as_of)
    registry = registry_summary(rt.settings.model_name, tracking_uri=rt.settings.tracking_uri)
    with open_session(rt.db_url) as s:
        promoted = count_by(s, AuditEvent.event_type).get("promotion", 0)
    summary = ReportSummary(
        period_start=start, period_end=as_of, models_promoted=promoted, **registry
    )
    return build_report(summary, drift_summary, metrics, alerts, out_dir)


@flow(name="monitor")
def monitor_flow(as_of: datetime | None = None) -> dict[str, Any]:
    """The scheduled drift + QA report; returns where they are and what drifted."""
    rt = runtime()
    as_of = as_of or rt.clock()
    out_dir = rt.settings.reports_dir
    try:
        drift_summary = drift(rt, as_of, out_dir)
    except Exception as exc:  # a report without drift beats no report at all
        get_run_logger().error("drift report failed: %s", exc)
        drift_summary = None
    report = qa_report(rt, as_of, drift_summary, out_dir)
    return {
        "report": report,
        "drift_html": drift_summary.html_path if drift_summary else None,
        "drifted": f"{drift_summary.n_drifted}/{drift_summary.n_columns}"
        if drift_summary
        else "n/a",
        "dataset_drift": drift_summary.dataset_drift if drift_summary else None,
    }
