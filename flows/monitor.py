"""Drift (Evidently, kept as workspace snapshots) and the weekly QA report (HTML, PDF, Markdown,
logged to MLflow): the daily `drift-check` runs the first, the weekly `qa-report` both."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from fraudloop.storage import open_session
from models.features import FEATURE_COLUMNS
from models.registry import registry_summary
from models.scoring import load_model
from monitoring import qa_data
from monitoring.drift import DriftSummary, drift_report, saved_summary
from monitoring.evidently_runs import DRIFT_TAG, WeeklyRun, add_snapshot, drift_sections
from monitoring.evidently_runs import weekly_evidently as evidently_week
from monitoring.outcomes import outcomes
from monitoring.publish import log_report, write_document
from monitoring.week_events import keep_policy
from monitoring.weekly import WeeklyReport, weekly_document, weekly_report
from pipeline.features import feature_config, window_features


@task(cache_policy=NO_CACHE)
def drift(rt: Runtime, as_of: datetime, out_dir: Path, reuse: bool = False) -> DriftSummary:
    """The drift run of `as_of`'s day; with `reuse`, the one the day's `drift-check` saved, if
    it ran (the weekly report runs an hour after it)."""
    stem = out_dir / f"drift-{as_of:%Y-%m-%d}"
    html, saved = stem.with_suffix(".html"), stem.with_suffix(".json")
    if reuse and (found := saved_summary(html, saved, FEATURE_COLUMNS)) is not None:
        return found
    m = rt.policy.monitoring
    split = as_of - timedelta(days=m.current_days)
    cfg = feature_config(rt.policy)
    with open_session(rt.db_url) as s:
        reference = window_features(s, split - timedelta(days=m.reference_days), split, cfg)
        current = window_features(s, split, as_of, cfg)
    model = load_model(rt.settings.tracking_uri, rt.settings.model_name, "champion")
    reference["score"] = model.score(reference[FEATURE_COLUMNS])
    current["score"] = model.score(current[FEATURE_COLUMNS])
    return drift_report(
        reference,
        current,
        FEATURE_COLUMNS,
        html,
        saved,
        keep=lambda snapshot: add_snapshot(rt.settings.home, snapshot, f"drift {as_of:%Y-%m-%d}"),
        timestamp=as_of,
        tags=[DRIFT_TAG],
    )


@task(cache_policy=NO_CACHE)
def read_week(rt: Runtime, as_of: datetime) -> qa_data.WeeklyData:
    with open_session(rt.db_url) as s:
        return qa_data.read_weekly(s, rt.policy.report, as_of)


@task(cache_policy=NO_CACHE)
def weekly_numbers(rt: Runtime, data: qa_data.WeeklyData, as_of: datetime) -> WeeklyReport:
    s = rt.settings
    kept = keep_policy(s.reports_dir / "policies", rt.policy.version, s.policy_file.read_text())
    champion = registry_summary(s.model_name, tracking_uri=s.tracking_uri)["champion"]
    return weekly_report(data, rt.policy, as_of, kept.parent, str(champion) if champion else None)


@task(cache_policy=NO_CACHE)
def weekly_evidently(rt: Runtime, data: qa_data.WeeklyData, as_of: datetime) -> WeeklyRun:
    delay = rt.policy.learning.chargeback_delay_days
    week, previous = data.week, data.previous
    return evidently_week(
        week.decisions,
        outcomes(week.decisions, week.labels, as_of, delay),
        previous.decisions,
        outcomes(previous.decisions, previous.labels, as_of, delay),
        rt.policy,
        as_of,
        rt.settings.home,
        rt.settings.reports_dir / f"evidently-weekly-{as_of:%Y-%m-%d}.html",
    )


@task(cache_policy=NO_CACHE)
def publish_weekly(
    rt: Runtime,
    report: WeeklyReport,
    data: qa_data.WeeklyData,
    evidently: WeeklyRun | None,
    daily: DriftSummary | None,
    as_of: datetime,
) -> dict[str, Path]:
    s = rt.settings
    sections = drift_sections(evidently, daily, s.home, s.reports_dir)
    doc = weekly_document(report, data.week, rt.policy, sections)
    stem = f"weekly-qa-{as_of:%Y-%m-%d}"
    files = write_document(doc, s.reports_dir, stem)
    files["json"] = s.reports_dir / f"{stem}.json"
    files["json"].write_text(report.model_dump_json(indent=1))
    return files


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def log_weekly(rt: Runtime, report: WeeklyReport, files: dict[str, Path], as_of: datetime) -> str:
    s, h = rt.settings, report.headline
    artifacts = None if s.tracking_uri.startswith("http") else s.mlflow_artifacts
    return log_report(
        s.tracking_uri,
        artifacts,
        f"weekly-qa-{as_of:%Y-%m-%d}",
        list(files.values()),
        {
            "decisions": h.decisions,
            "override_rate": h.override_rate,
            "sla_compliance": h.sla_compliance,
            "fraud_caught": h.fraud_caught,
            "amount_prevented": h.amount_prevented,
            "average_precision": report.quality.average_precision,
            "brier": report.quality.brier,
            "cbpe_precision": report.estimate.precision,
            "cbpe_recall": report.estimate.recall,
        },
        {"report": "weekly-qa", "period_end": as_of.isoformat(), "policy": report.policy_version},
    )


@flow(name="monitor")
def monitor_flow(as_of: datetime | None = None, report: bool = True) -> dict[str, Any]:
    """Drift (each run a snapshot in the Evidently workspace) and, with `report`, the weekly QA
    report over the policy's `report.weekly_days` up to `as_of`."""
    rt = runtime()
    as_of = as_of or rt.clock()
    log = get_run_logger()
    out_dir = rt.settings.reports_dir
    try:
        daily = drift(rt, as_of, out_dir, reuse=report)
    except Exception as exc:  # a report without drift beats no report at all
        log.error("drift report failed: %s", exc)
        daily = None
    result: dict[str, Any] = {
        "drift_html": daily.html_path if daily else None,
        "drifted": f"{daily.n_drifted}/{daily.n_columns}" if daily else "n/a",
        "dataset_drift": daily.dataset_drift if daily else None,
    }
    if not report:
        return result
    data = read_week(rt, as_of)
    numbers = weekly_numbers(rt, data, as_of)
    try:
        evidently = weekly_evidently(rt, data, as_of)
    except Exception as exc:  # as for drift: the report says the run is missing
        log.error("weekly Evidently run failed: %s", exc)
        evidently = None
    files = publish_weekly(rt, numbers, data, evidently, daily, as_of)
    try:
        result["mlflow_run"] = log_weekly(rt, numbers, files, as_of)
    except Exception as exc:  # the files are written; MLflow gets the next week's
        log.error("logging the report to MLflow failed: %s", exc)
        result["mlflow_run"] = None
    return {**result, "report": files["html"], "pdf": files["pdf"], "markdown": files["markdown"]}
