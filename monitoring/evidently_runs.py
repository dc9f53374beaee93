"""Evidently runs kept as snapshots in a local Evidently workspace (`<home>/evidently`), one
project, so `evidently ui --workspace <home>/evidently` shows the trend run after run: the daily
feature drift (`monitoring.drift`) and the weekly QA run here (drift and data summary of the
stored scores and amounts against the week before; classification quality on the outcomes
known so far). Each snapshot is stamped with the period's end, not the wall clock, so a
backfill lands in its place on the time axis.

The weekly run compares random samples of `report.sample_rows` per week: a drift test on a
million rows finds every difference significant, and its cost grows with the rows.
Evidently is imported inside the functions: its import takes seconds.
"""

import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from fraudloop.policy import Policy
from monitoring.document import Section, Table, Text
from monitoring.drift import summarize
from monitoring.evidently_workspace import ui_command, workspace_dir
from monitoring.formatting import count, num, pct
from monitoring.outcomes import truth as outcome_truth

PROJECT = "fraudloop"
DESCRIPTION = "fraudloop: daily feature drift and the weekly QA runs (scores, amounts, quality)"
WEEKLY_COLUMNS = ["score", "confidence", "amount", "hour"]
TARGET = "is_fraud"
WEEKLY_TAG, DRIFT_TAG = "weekly-qa", "daily-drift"
_METRIC = "evidently:metric_v2:"


class WeeklyRun(BaseModel):
    """What the weekly Evidently run found, and where its snapshot and HTML are."""

    rows_current: int
    rows_reference: int
    drift_share: float | None
    drifted: list[str]
    score_drift: float | None
    labelled: int
    precision: float | None
    recall: float | None
    roc_auc: float | None
    html_path: Path


def _project(workspace: Any) -> Any:
    """The workspace's fraudloop project, made (with its trend dashboard) on first use."""
    found = workspace.search_project(PROJECT)
    if found:
        return found[0]
    project = workspace.create_project(PROJECT, DESCRIPTION)
    for panel in _panels():
        project.dashboard.add_panel(panel)
    return project


def _panels() -> list[Any]:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    def line(title: str, metric: str, legend: str, tags: list[str], **labels: str) -> Any:
        value = PanelMetric(legend=legend, metric=_METRIC + metric, metric_labels=labels, tags=tags)
        return line_plot_panel(title=title, values=[value], size="half")

    return [
        line(
            "Share of features drifted (daily)",
            "DriftedColumnsCount",
            "share",
            [DRIFT_TAG],
            value_type="share",
        ),
        line("Score drift (daily)", "ValueDrift", "score", [DRIFT_TAG], column="score"),
        line("Score drift (weekly)", "ValueDrift", "score", [WEEKLY_TAG], column="score"),
        line("Amount drift (weekly)", "ValueDrift", "amount", [WEEKLY_TAG], column="amount"),
        line("Payments (weekly sample)", "RowCount", "rows", [WEEKLY_TAG]),
        line("Precision on known outcomes (weekly)", "Precision", "precision", [WEEKLY_TAG]),
        line("Recall on known outcomes (weekly)", "Recall", "recall", [WEEKLY_TAG]),
        line("ROC AUC on known outcomes (weekly)", "RocAuc", "roc auc", [WEEKLY_TAG]),
    ]


def add_snapshot(home: Path, snapshot: Any, name: str) -> str:
    """Keep one Evidently snapshot in the workspace; returns its id."""
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(workspace_dir(home)))
    ref = workspace.add_run(_project(workspace).id, snapshot, name=name)
    return str(ref.id)


def flag_threshold(policy: Policy) -> float:
    """The score from which the router sends a payment to a person (or blocks it)."""
    if policy.mode == "generic":
        return policy.generic.async_risk_above
    return policy.fraud.review_from


def weekly_frame(decisions: pd.DataFrame, truth: pd.Series | None = None) -> pd.DataFrame:
    """The stored columns the weekly run compares, one row per scored decision."""
    frame = pd.DataFrame(
        {
            "score": decisions["score"].astype(float),
            "confidence": decisions["confidence"].astype(float),
            "amount": decisions["amount"].astype(float),
            "hour": decisions["tx_datetime"].dt.hour.astype(float),
        }
    )
    if truth is not None:
        frame[TARGET] = truth
    return frame[frame["score"].notna()]


def sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def weekly_run(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    policy: Policy,
    as_of: datetime,
    out_html: Path,
) -> tuple[WeeklyRun, list[Any]]:
    """Drift and summary of the weekly columns (samples of `report.sample_rows`), and
    classification quality where outcomes are known on both sides (`is_fraud` not NaN);
    returns what it found and its snapshots, for the workspace."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import ClassificationPreset, DataDriftPreset, DataSummaryPreset

    rows, seed = policy.report.sample_rows, policy.active_learning.seed
    cur, ref = sample(current, rows, seed), sample(reference, rows, seed)
    features = [c for c in WEEKLY_COLUMNS if c != "score"]
    plain = DataDefinition(numerical_columns=WEEKLY_COLUMNS)
    with warnings.catch_warnings():  # sklearn's "ill-defined precision" on an empty class
        warnings.simplefilter("ignore")
        data = Report(
            [DataDriftPreset(columns=features), ValueDrift(column="score"), DataSummaryPreset()],
            include_tests=True,
        ).run(
            Dataset.from_pandas(cur[WEEKLY_COLUMNS], data_definition=plain),
            Dataset.from_pandas(ref[WEEKLY_COLUMNS], data_definition=plain),
            timestamp=as_of,
            tags=[WEEKLY_TAG],
        )
        snapshots, values = [data], _values(data.dict())
        known_cur, known_ref = _known(cur), _known(ref)
        if _both_classes(known_cur) and _both_classes(known_ref):
            labelled = DataDefinition(
                numerical_columns=WEEKLY_COLUMNS,
                classification=[BinaryClassification(target=TARGET, prediction_probas="score")],
            )
            quality = Report(
                [ClassificationPreset(probas_threshold=flag_threshold(policy))],
                include_tests=False,
            ).run(
                Dataset.from_pandas(known_cur, data_definition=labelled),
                Dataset.from_pandas(known_ref, data_definition=labelled),
                timestamp=as_of,
                tags=[WEEKLY_TAG],
            )
            snapshots.append(quality)
            values |= _values(quality.dict())
    out_html.parent.mkdir(parents=True, exist_ok=True)
    data.save_html(str(out_html))
    verdict = summarize(data.dict(), features, "score", out_html, None)
    run = WeeklyRun(
        rows_current=len(cur),
        rows_reference=len(ref),
        drift_share=verdict.share_drifted,
        drifted=verdict.drifted_columns + (["score"] if verdict.score_drifted else []),
        score_drift=_float(values.get(("ValueDrift", "score"))),
        labelled=len(known_cur),
        precision=_float(values.get(("Precision", ""))),
        recall=_float(values.get(("Recall", ""))),
        roc_auc=_float(values.get(("RocAuc", ""))),
        html_path=out_html,
    )
    return run, snapshots


def _known(frame: pd.DataFrame) -> pd.DataFrame:
    known = frame[frame[TARGET].notna()]
    return known.assign(**{TARGET: known[TARGET].astype(int)})


def _both_classes(frame: pd.DataFrame) -> bool:
    return frame[TARGET].nunique() == 2  # noqa: PLR2004 - fraud and legitimate


def _values(dump: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """Metric values of a snapshot dump by (metric name, column)."""
    out: dict[tuple[str, str], Any] = {}
    for m in dump.get("metrics", []):
        config = m.get("config", {})
        kind = str(config.get("type", "")).removeprefix(_METRIC)
        out.setdefault((kind, str(config.get("column") or "")), m.get("value"))
    return out


def _share(value: Any) -> float | None:
    return _float(value.get("share")) if isinstance(value, dict) else None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, dict):
        return None
    number = float(value)
    return None if np.isnan(number) else number


def drift_sections(
    run: WeeklyRun | None, daily: Any, home: Path, reports_dir: Path
) -> list[Section]:
    """The report's drift section: the weekly run and the latest daily feature drift."""
    import os

    blocks: list[Text | Table] = []
    if run is None:
        blocks.append(Text("The weekly Evidently run did not complete; see the flow's log."))
    else:
        rows = [
            [
                "Rows compared (this week / week before, sampled)",
                f"{count(run.rows_current)} / {count(run.rows_reference)}",
            ],
            ["Share of the weekly columns drifted", pct(run.drift_share)],
            ["Columns drifted", ", ".join(run.drifted) or "none"],
            ["Score drift (Evidently's statistic)", num(run.score_drift, ".4f")],
            ["Known outcomes in the sample", count(run.labelled)],
            [
                "Precision / recall at the review threshold",
                f"{pct(run.precision)} / {pct(run.recall)}",
            ],
            ["ROC AUC", num(run.roc_auc, ".3f")],
            ["Evidently report", os.path.relpath(run.html_path, reports_dir)],
        ]
        blocks.append(Table(["Measure", "Value"], rows, "This week against the week before"))
    if daily is not None:
        blocks.append(
            Table(
                ["Features drifted", "Dataset drift", "Score drifted", "Evidently report"],
                [
                    [
                        f"{daily.n_drifted}/{daily.n_columns}",
                        str(daily.dataset_drift),
                        str(daily.score_drifted),
                        os.path.relpath(daily.html_path, reports_dir),
                    ]
                ],
                "Latest daily feature drift (policy monitoring.current_days against the days before)",
            )
        )
    blocks.append(Text(f"The trend run after run: {ui_command(home)}"))
    return [Section("Drift and data quality (Evidently)", list(blocks))]


def weekly_evidently(
    week: pd.DataFrame,
    week_outcome: pd.Series,
    previous: pd.DataFrame,
    previous_outcome: pd.Series,
    policy: Policy,
    as_of: datetime,
    home: Path,
    out_html: Path,
) -> WeeklyRun:
    """The weekly run (`weekly_run`) on this week against the one before, each with its
    outcomes as known now, kept in the workspace."""
    current = weekly_frame(week, outcome_truth(week_outcome))
    reference = weekly_frame(previous, outcome_truth(previous_outcome))
    run, snapshots = weekly_run(current, reference, policy, as_of, out_html)
    for i, snapshot in enumerate(snapshots):
        add_snapshot(
            home, snapshot, f"weekly QA {as_of:%Y-%m-%d} ({'data' if i == 0 else 'quality'})"
        )
    return run
