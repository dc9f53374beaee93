"""Feature and score drift with Evidently's DataDriftPreset; we only read its verdicts.

Evidently is imported inside the function: the import takes several seconds and most callers
(CLI help, unit tests) never need it. Compare windows whose 30-day features have full history,
or the early window will look drifted.
"""

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from fraudloop.errors import FraudloopError


class DriftSummary(BaseModel):
    n_drifted: int
    n_columns: int
    share_drifted: float
    drifted_columns: list[str]
    dataset_drift: bool
    score_drifted: bool | None
    html_path: Path
    json_path: Path | None


def _check(frame: pd.DataFrame, name: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FraudloopError(f"drift: {name} data lacks columns {missing}")
    if frame.empty:
        raise FraudloopError(f"drift: {name} data has no rows; widen the window")


def _is_flag(*columns: pd.Series) -> bool:
    """Only 0 and 1 in every window: a flag (weekend, night), a category to Evidently.

    Evidently tests a column of two values the same way whichever kind it is declared (Jensen-
    Shannon above 1,000 rows, a Z-test below), but correlates every numerical column for its
    report: a flag that is constant over a short window (`tx_during_weekend` over two weekdays)
    has no deviation, and numpy warns that it divided by zero.
    """
    return all(column.dropna().isin((0, 1)).all() for column in columns)


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    out_html: Path,
    out_json: Path | None = None,
    score_column: str | None = "score",
    keep: Callable[[Any], str] | None = None,
    timestamp: datetime | None = None,
    tags: list[str] | None = None,
) -> DriftSummary:
    """Run the preset on `columns` plus a separate score-drift check, save HTML (and JSON);
    `keep` is given the snapshot (`monitoring.evidently_runs.add_snapshot`), stamped with
    `timestamp` (the period's end) and `tags`.

    The score is checked beside, not inside, the preset so that prediction drift does not
    change the share of drifted features that decides dataset drift. Frames without the score
    column (e.g. raw transactions) get `score_drifted=None`.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = [c for c in columns if c != score_column]
    if not features:
        raise FraudloopError("drift: no feature columns given; pass at least one column")
    in_both = score_column in reference.columns and score_column in current.columns
    score = score_column if score_column and in_both else None
    used = features + ([score] if score else [])
    _check(reference, "reference", used)
    _check(current, "current", used)

    numeric = [
        c
        for c in used
        if pd.api.types.is_numeric_dtype(reference[c]) and not _is_flag(reference[c], current[c])
    ]
    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=[c for c in used if c not in numeric]
    )
    metrics = [DataDriftPreset(columns=features)]
    if score:
        metrics.append(ValueDrift(column=score))
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(current[used], data_definition=definition),
        Dataset.from_pandas(reference[used], data_definition=definition),
        timestamp=timestamp,
        tags=tags,
    )
    if keep is not None:
        keep(snapshot)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out_html))
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_json(str(out_json))
    return summarize(snapshot.dict(), features, score, out_html, out_json)


def saved_summary(
    html_path: Path, json_path: Path, features: list[str], score_column: str | None = "score"
) -> DriftSummary | None:
    """The verdicts of a drift run saved earlier (its HTML and JSON), None when there is none:
    the weekly report takes the day's drift check instead of building nine days of features
    from their history again."""
    if not (html_path.is_file() and json_path.is_file()):
        return None
    snapshot = json.loads(json_path.read_text())
    return summarize(
        snapshot, [c for c in features if c != score_column], score_column, html_path, json_path
    )


def summarize(
    snapshot: dict,
    features: list[str],
    score_column: str | None,
    html_path: Path,
    json_path: Path | None,
) -> DriftSummary:
    """Read Evidently's own per-column and dataset verdicts (its test statuses) from the dump.

    Each ValueDrift test FAILs when Evidently detected drift with that column's method and
    threshold, and the DriftedColumnsCount test FAILs when the drifted share reaches the preset's
    drift_share: reading those avoids re-deriving "p-value below / distance above" per method.
    """
    column_drift: dict[str, bool] = {}
    dataset_drift: bool | None = None
    for test in snapshot.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        kind = str(params.get("type", ""))
        failed = test.get("status") == "FAIL"
        if kind.endswith(":ValueDrift"):
            column_drift[params["column"]] = failed
        elif kind.endswith(":DriftedColumnsCount"):
            dataset_drift = failed
    expected = [*features, *([score_column] if score_column else [])]
    missing = [c for c in expected if c not in column_drift]
    if missing or dataset_drift is None:
        raise FraudloopError(
            f"drift: Evidently's output has no verdict for {missing or 'the dataset'}; "
            "check the evidently version (written for 0.7)"
        )
    drifted = [c for c in features if column_drift[c]]
    return DriftSummary(
        n_drifted=len(drifted),
        n_columns=len(features),
        share_drifted=len(drifted) / len(features) if features else 0.0,
        drifted_columns=drifted,
        dataset_drift=dataset_drift,
        score_drifted=column_drift[score_column] if score_column else None,
        html_path=html_path,
        json_path=json_path,
    )
