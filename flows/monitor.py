"""Drift (Evidently), overrides, SLAs and alerts over recent decisions, written as the QA report."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from fraudloop import audit, decisions, labels
from fraudloop.storage import AuditEvent, count_by, open_session
from models.features import FEATURE_COLUMNS, FeatureConfig, compute_features
from models.registry import registry_summary
from models.scoring import load_model
from monitoring.alerts import LogSink
from monitoring.drift import DriftSummary, drift_report
from monitoring.metrics import alert_inputs, compute_metrics, evaluate_alerts
from monitoring.report import ReportSummary, build_report


def window_features(rt: Runtime, start: datetime, end: datetime) -> pd.DataFrame:
    """Features of the stored transactions in [start, end), computed as scoring computed them."""
    cfg = FeatureConfig(delay_days=rt.policy.learning.chargeback_delay_days)
    with open_session(rt.db_url) as s:
        hist = labels.history(s, since=start - timedelta(days=cfg.history_days), until=end)
        known = labels.labels(s, known_before=end)
    window = hist[hist["tx_datetime"] >= start]
    return compute_features(hist[hist["tx_datetime"] < start], window, known, cfg)


@task(cache_policy=NO_CACHE)
def drift(rt: Runtime, as_of: datetime, out_dir: Path) -> DriftSummary:
    m = rt.policy.monitoring
    split = as_of - timedelta(days=m.current_days)
    reference = window_features(rt, split - timedelta(days=m.reference_days), split)
    current = window_features(rt, split, as_of)
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
        frame = decisions.monitoring_frame(s)
        current = frame[frame["decided_at"] >= start]
        baseline = frame[frame["decided_at"] < start]["confidence"].mean()
        metrics = compute_metrics(current, policy, as_of)
        alerts = evaluate_alerts(
            alert_inputs(current, policy, as_of, None if pd.isna(baseline) else float(baseline)),
            policy.alerts,
        )
        sink = LogSink()
        for alert in alerts:
            sink.send(alert)
        audit.append(
            s,
            [
                audit.event(
                    f"alert:{a.rule}:{a.scope}:{as_of.isoformat()}",
                    "alert",
                    "monitor",
                    as_of,
                    message=a.message,
                )
                for a in alerts
            ],
        )
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
    as_of = as_of or datetime.now(UTC).replace(tzinfo=None)
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
