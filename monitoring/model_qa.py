"""The monthly model QA (SPEC cadence): performance and calibration by cohort (the QA report's
segments), bias checks, drift of the features and the score over the month, and the
champion's history with its holdout figures.

Bias checks compare cohorts on what a customer feels: the false-decline rate (a legitimate
payment declined) and the review rate (a payment held for a person). A cohort with fewer known
outcomes (or decisions) than `report.min_cohort_outcomes` is shown but never called the largest
gap: a rate of 1 of 3 says nothing.
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.metrics import average_precision_score

from fraudloop.policy import Policy
from monitoring import qa_plots
from monitoring.document import Document, Picture, Section, Table, Text
from monitoring.drift import summarize
from monitoring.formatting import count, num, pct
from monitoring.maturity import flagged
from monitoring.outcomes import DECLINED, truth
from monitoring.segments import SEGMENTS

COHORT_COLUMNS = [
    "segment",
    "band",
    "decisions",
    "known",
    "fraud known",
    "precision",
    "recall",
    "average precision",
    "mean score",
    "fraud rate",
    "calibration gap",
    "false-decline rate",
    "review rate",
]
PSI_BINS = np.linspace(0.0, 1.0, 11)
PSI_FLOOR = 1e-4  # an empty bin's share in the population stability index


class Gap(BaseModel):
    """The widest spread of a rate across one segment's cohorts."""

    measure: str
    segment: str
    highest: str
    lowest: str
    high: float
    low: float

    @property
    def gap(self) -> float:
        return self.high - self.low


class VersionRow(BaseModel):
    """One registered version as the registry holds it (`models.governance.list_versions`)."""

    version: int
    created: datetime
    aliases: list[str]
    metrics: dict[str, float]
    window: dict[str, str]
    champion_order: int | None  # its place in the champion history, 1 = first champion


def cohort_table(frame: pd.DataFrame, outcome: pd.Series, segments: pd.DataFrame) -> pd.DataFrame:
    """One row per cohort (segment band) with `COHORT_COLUMNS`."""
    y = truth(outcome)
    flag = flagged(frame)
    declined = frame["final_decision"].isin(DECLINED)
    review = frame["route"].astype(str).str.endswith("_review")
    rows = []
    for name, title in SEGMENTS.items():
        for band, idx in segments.groupby(segments[name], observed=False).groups.items():
            rows.append(
                _cohort(
                    title, str(band), frame.loc[idx], y[idx], flag[idx], declined[idx], review[idx]
                )
            )
    return pd.DataFrame(rows, columns=COHORT_COLUMNS)


def _cohort(
    segment: str,
    band: str,
    frame: pd.DataFrame,
    y: pd.Series,
    flag: pd.Series,
    declined: pd.Series,
    review: pd.Series,
) -> list[Any]:
    known = y.notna()
    fraud, legit = y == 1, y == 0
    scored = known & frame["score"].notna()
    s, t = frame.loc[scored, "score"].astype(float), y[scored]
    mean_score = float(s.mean()) if len(s) else None
    rate = float(t.mean()) if len(t) else None
    return [
        segment,
        band,
        len(frame),
        int(known.sum()),
        int(fraud.sum()),
        _mean(fraud[flag & known]),
        _mean(flag[fraud]),
        float(average_precision_score(t, s)) if t.nunique() == 2 else None,  # noqa: PLR2004
        mean_score,
        rate,
        None if mean_score is None or rate is None else mean_score - rate,
        _mean(declined[legit]),
        _mean(review),
    ]


def _mean(flags: pd.Series) -> float | None:
    return float(flags.mean()) if len(flags) else None


def largest_gaps(table: pd.DataFrame, min_n: int) -> list[Gap]:
    """Per segment, the spread of the false-decline and review rates across its cohorts with
    enough data (legitimate outcomes known, or decisions); widest first."""
    gaps = []
    for measure, base in (("false-decline rate", "known"), ("review rate", "decisions")):
        for segment, rows in table.groupby("segment", sort=False):
            usable = rows[(rows[base] >= min_n) & rows[measure].notna()]
            if len(usable) < 2:  # noqa: PLR2004 - a gap needs two cohorts
                continue
            hi, lo = usable.loc[usable[measure].idxmax()], usable.loc[usable[measure].idxmin()]
            gaps.append(
                Gap(
                    measure=measure,
                    segment=str(segment),
                    highest=str(hi["band"]),
                    lowest=str(lo["band"]),
                    high=float(hi[measure]),
                    low=float(lo[measure]),
                )
            )
    return sorted(gaps, key=lambda g: -g.gap)


def psi(reference: pd.Series, current: pd.Series) -> float | None:
    """Population stability index of the score on fixed bins (empty bins floored)."""
    if reference.empty or current.empty:
        return None
    ref = np.histogram(reference, bins=PSI_BINS)[0] / len(reference)
    cur = np.histogram(current, bins=PSI_BINS)[0] / len(current)
    ref, cur = np.maximum(ref, PSI_FLOOR), np.maximum(cur, PSI_FLOOR)
    return float(((cur - ref) * np.log(cur / ref)).sum())


def weekly_scores(frame: pd.DataFrame, start: datetime, days: int) -> pd.DataFrame:
    """The score week by week through the month: mean, p90, share flagged, PSI against the
    month's first week."""
    week = ((frame["tx_datetime"] - pd.Timestamp(start)).dt.days // days).astype(int)
    first = (
        frame.loc[week == week.min(), "score"].dropna() if len(frame) else pd.Series(dtype=float)
    )
    rows = []
    for w, group in frame.groupby(week, sort=True):
        score = group["score"].dropna()
        rows.append(
            {
                "week from": (pd.Timestamp(start) + pd.Timedelta(days=days * int(w))).strftime(
                    "%Y-%m-%d"
                ),
                "decisions": len(group),
                "mean score": float(score.mean()) if len(score) else None,
                "p90 score": float(score.quantile(0.9)) if len(score) else None,
                "flagged": float(flagged(group).mean()),
                "PSI vs first week": psi(first, score),
            }
        )
    return pd.DataFrame(rows)


class DriftDay(BaseModel):
    """One daily drift run of the month (`monitoring.drift.DriftSummary`, as read back)."""

    day: str
    n_drifted: int
    n_columns: int
    dataset_drift: bool
    score_drifted: bool | None
    drifted_columns: list[str]


def feature_drift_rows(days: list[DriftDay]) -> tuple[list[list[str]], list[list[str]]]:
    """Per day, what drifted; per feature, on how many of the month's runs it drifted."""
    per_day = [
        [d.day, f"{d.n_drifted}/{d.n_columns}", str(d.dataset_drift), str(d.score_drifted)]
        for d in days
    ]
    times = pd.Series([c for d in days for c in d.drifted_columns]).value_counts()
    per_feature = [[str(k), f"{int(v)}/{len(days)}"] for k, v in times.items()]
    return per_day, per_feature


def history_rows(versions: list[VersionRow], metric: str) -> list[list[str]]:
    ordered = sorted(versions, key=lambda v: v.version)
    return [
        [
            f"v{v.version}",
            f"{v.created:%Y-%m-%d %H:%M}",
            ", ".join(v.aliases) or "-",
            "-" if v.champion_order is None else f"#{v.champion_order}",
            num(v.metrics.get(metric), ".4f"),
            num(v.metrics.get("brier"), ".4f"),
            f"{v.window.get('start', '?')} to {v.window.get('end', '?')}",
        ]
        for v in ordered
    ]


def _cell(column: str, value: Any) -> str:
    if column in ("segment", "band"):
        return str(value)
    if column in ("decisions", "known", "fraud known"):
        return count(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return num(value, "+.3f") if column == "calibration gap" else pct(value)


def model_qa_document(
    start: datetime,
    end: datetime,
    policy: Policy,
    cohorts: pd.DataFrame,
    gaps: list[Gap],
    scores: pd.DataFrame,
    drift_days: list[DriftDay],
    versions: list[VersionRow],
    moves: list[list[str]],
) -> Document:
    per_day, per_feature = feature_drift_rows(drift_days)
    metric = policy.learning.promotion_metric
    widest = gaps[0] if gaps else None
    callout = (
        f"Largest gap: {widest.measure} in {widest.segment}, {pct(widest.high)} for "
        f"{widest.highest} against {pct(widest.low)} for {widest.lowest} "
        f"({(widest.gap) * 100:.1f} percentage points)."
        if widest
        else "No segment has two cohorts with enough outcomes to compare."
    )
    table = [[_cell(c, r[c]) for c in COHORT_COLUMNS] for r in cohorts.to_dict("records")]
    return Document(
        title=f"fraudloop monthly model QA {start:%Y-%m-%d} to {end:%Y-%m-%d}",
        subtitle=f"policy {policy.version}; cohorts: policy report.segments",
        sections=[
            Section(
                "Performance and calibration by cohort",
                [
                    Text(
                        "Known outcomes only (monitoring.outcomes). Precision and recall of "
                        "what the model flagged (blocked or sent to a person); calibration gap "
                        "is the mean score minus the fraud rate (0 when calibrated)."
                    ),
                    Table(COHORT_COLUMNS, table),
                ],
            ),
            Section(
                "Bias checks",
                [
                    Text(callout),
                    Table(
                        ["Measure", "Segment", "Highest", "", "Lowest", "", "Gap"],
                        [
                            [
                                g.measure,
                                g.segment,
                                g.highest,
                                pct(g.high),
                                g.lowest,
                                pct(g.low),
                                f"{g.gap * 100:.1f} pp",
                            ]
                            for g in gaps
                        ],
                        f"Cohorts with at least {policy.report.min_cohort_outcomes} outcomes "
                        "(false declines) or decisions (reviews)",
                    ),
                    Picture(
                        "false-declines",
                        qa_plots.cohort_gaps(
                            cohorts, "false-decline rate", "False-decline rate by cohort"
                        ),
                        "false-decline rate by cohort",
                    ),
                    Picture(
                        "review-rate",
                        qa_plots.cohort_gaps(cohorts, "review rate", "Review rate by cohort"),
                        "review rate by cohort",
                    ),
                ],
            ),
            Section(
                "Drift of the features and the score",
                [
                    Table(
                        list(scores.columns),
                        [
                            [_score_cell(c, v) for c, v in row.items()]
                            for row in scores.to_dict("records")
                        ],
                        "The score week by week (PSI: population stability index)",
                    ),
                    Table(
                        ["Day", "Features drifted", "Dataset drift", "Score drifted"],
                        per_day,
                        "Daily feature drift runs of the month (Evidently)",
                    ),
                    Table(
                        ["Feature", "Runs it drifted"],
                        per_feature,
                        "Features by how often they drifted",
                    ),
                ],
            ),
            Section(
                "Champion history",
                [
                    Table(
                        [
                            "Version",
                            "Registered",
                            "Aliases",
                            "Champion",
                            f"Holdout {metric}",
                            "Holdout Brier",
                            "Training window",
                        ],
                        history_rows(versions, metric),
                    ),
                    Table(
                        ["Time", "Event", "Version", "Previous champion", "Actor", "Reason"],
                        moves,
                        "Champion moves in the month (audit trail)",
                    ),
                ],
            ),
        ],
    )


def _score_cell(column: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if column == "decisions":
        return count(value)
    if column == "flagged":
        return pct(value)
    return num(value, ".3f")


def read_drift_days(
    reports_dir: Path, start: datetime, end: datetime, features: list[str]
) -> list[DriftDay]:
    """The daily drift runs (`drift-<day>.json`, written by the `monitor` flow) of [start, end)."""
    days = []
    for path in sorted(reports_dir.glob("drift-*.json")):
        day = path.stem.removeprefix("drift-")
        try:
            when = datetime.strptime(day, "%Y-%m-%d")
        except ValueError:
            continue
        if not start <= when < end:
            continue
        found = summarize(json.loads(path.read_text()), features, "score", path, path)
        days.append(
            DriftDay(
                day=day,
                n_drifted=found.n_drifted,
                n_columns=found.n_columns,
                dataset_drift=found.dataset_drift,
                score_drifted=found.score_drifted,
                drifted_columns=found.drifted_columns,
            )
        )
    return days
