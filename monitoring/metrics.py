"""Pure metrics over the decisions table, and the SPEC's default alert rules.

The decisions frame has one row per transaction: transaction_id, decided_at, route,
recommendation ("approve"/"reject", the model's), final_decision (auto_approve / auto_reject /
human_approve / human_reject / escalated / None while pending), score, confidence, amount,
review_created_at, reviewed_at, sla_due_at, reviewer. Timestamps are naive UTC.
Thresholds come from the policy file (`fraudloop.policy.Alerts`), never from this module.
"""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel

from fraudloop.alerts import Alert
from fraudloop.policy import Alerts, Policy

# A human decision is compared with the recommendation it would have agreed with.
HUMAN_DECISIONS = {"human_approve": "approve", "human_reject": "reject"}
SCORE_BINS = np.linspace(0.0, 1.0, 21)


class OverrideRate(BaseModel):
    reviewed: int
    overridden: int
    rate: float | None


class LatencyStats(BaseModel):
    reviewed: int
    median_minutes: float | None
    p90_minutes: float | None
    median_sla_minutes: float | None
    sla_compliance: float | None
    open_overdue: int


class ConfidenceSummary(BaseModel):
    n: int
    mean: float | None
    p10: float | None
    median: float | None
    p90: float | None


class MonitoringMetrics(BaseModel):
    """Everything the QA report shows for one period, JSON-serialisable for the flow's artifacts."""

    scored: int
    auto_allowed: int
    auto_blocked: int
    sent_to_review: int
    routes: dict[str, int]
    overrides: OverrideRate
    high_impact_overrides: OverrideRate
    latency: dict[str, LatencyStats]
    confidence: ConfidenceSummary
    score_bins: list[float]
    score_histogram: dict[str, list[int]]
    daily_volume: dict[str, dict[str, int]]


class AlertInputs(BaseModel):
    """What the alert rules look at: each value already cut to its rule's window."""

    at: datetime
    high_impact_overrides: OverrideRate
    latency: dict[str, LatencyStats]
    mean_confidence: float | None
    baseline_confidence: float | None


def override_rate(df: pd.DataFrame) -> OverrideRate:
    """Share of human decisions that differ from the model's recommendation.

    Pending and escalated reviews have no human decision yet, so they are neither reviewed nor
    overridden; counting them would dilute the rate while the queue is long.
    """
    human = df["final_decision"].map(HUMAN_DECISIONS)
    decided = human.notna()
    reviewed = int(decided.sum())
    overridden = int((human[decided] != df.loc[decided, "recommendation"]).sum())
    return OverrideRate(
        reviewed=reviewed,
        overridden=overridden,
        rate=overridden / reviewed if reviewed else None,
    )


def route_counts(df: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in df["route"].value_counts().sort_index().items()}


def _minutes(delta: pd.Series) -> pd.Series:
    return delta.dt.total_seconds() / 60.0


def _quantile(values: pd.Series, q: float) -> float | None:
    return float(values.quantile(q)) if len(values) else None


def review_latency(df: pd.DataFrame, now: datetime | None = None) -> dict[str, LatencyStats]:
    """Median/p90 review latency and SLA compliance per route.

    With `now`, open reviews already past their due time count as SLA breaches: otherwise the
    worst cases would be invisible until someone finally closes them.
    """
    in_review = df[df["review_created_at"].notna()]
    stats = {}
    for route, group in in_review.groupby("route", sort=True):
        done = group[group["reviewed_at"].notna()]
        latency = _minutes(done["reviewed_at"] - done["review_created_at"])
        sla = _minutes(group["sla_due_at"] - group["review_created_at"])
        on_time = int((done["reviewed_at"] <= done["sla_due_at"]).sum())
        overdue = 0
        if now is not None:
            open_ = group[group["reviewed_at"].isna()]
            overdue = int((open_["sla_due_at"] < now).sum())
        judged = len(done) + overdue
        stats[str(route)] = LatencyStats(
            reviewed=len(done),
            median_minutes=_quantile(latency, 0.5),
            p90_minutes=_quantile(latency, 0.9),
            median_sla_minutes=_quantile(sla, 0.5),
            sla_compliance=on_time / judged if judged else None,
            open_overdue=overdue,
        )
    return stats


def confidence_summary(df: pd.DataFrame) -> ConfidenceSummary:
    conf = df["confidence"].dropna()
    return ConfidenceSummary(
        n=len(conf),
        mean=float(conf.mean()) if len(conf) else None,
        p10=_quantile(conf, 0.1),
        median=_quantile(conf, 0.5),
        p90=_quantile(conf, 0.9),
    )


def score_histogram(df: pd.DataFrame) -> dict[str, list[int]]:
    """Score counts per route on fixed bins, so periods can be compared bin by bin."""
    return {
        str(route): np.histogram(group["score"].dropna(), bins=SCORE_BINS)[0].tolist()
        for route, group in df.groupby("route", sort=True)
    }


def daily_volume(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    days = df["decided_at"].dt.strftime("%Y-%m-%d")
    table = pd.crosstab(days, df["route"])
    return {str(day): {str(r): int(n) for r, n in row.items()} for day, row in table.iterrows()}


def high_impact(df: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    return df[df["amount"] > policy.high_impact.amount_above]


def compute_metrics(
    df: pd.DataFrame, policy: Policy, now: datetime | None = None
) -> MonitoringMetrics:
    """All report metrics for one period of decisions."""
    return MonitoringMetrics(
        scored=len(df),
        auto_allowed=int((df["final_decision"] == "auto_approve").sum()),
        auto_blocked=int((df["final_decision"] == "auto_reject").sum()),
        sent_to_review=int(df["review_created_at"].notna().sum()),
        routes=route_counts(df),
        overrides=override_rate(df),
        high_impact_overrides=override_rate(high_impact(df, policy)),
        latency=review_latency(df, now),
        confidence=confidence_summary(df),
        score_bins=SCORE_BINS.tolist(),
        score_histogram=score_histogram(df),
        daily_volume=daily_volume(df),
    )


def _within(df: pd.DataFrame, column: str, now: datetime, minutes: int) -> pd.DataFrame:
    start = now - timedelta(minutes=minutes)
    return df[(df[column] > start) & (df[column] <= now)]


def alert_inputs(
    df: pd.DataFrame, policy: Policy, now: datetime, baseline_confidence: float | None
) -> AlertInputs:
    """Cut each rule's window: overrides and latency over the reviews closed in the trailing
    policy window ending at `now`; confidence over the whole frame (the caller's current period)
    against the baseline period's mean."""
    rules = policy.alerts
    return AlertInputs(
        at=now,
        high_impact_overrides=override_rate(
            _within(high_impact(df, policy), "reviewed_at", now, rules.override_window_minutes)
        ),
        latency=review_latency(_within(df, "reviewed_at", now, rules.latency_window_minutes)),
        mean_confidence=confidence_summary(df).mean,
        baseline_confidence=baseline_confidence,
    )


def evaluate_alerts(inputs: AlertInputs, rules: Alerts) -> list[Alert]:
    """Apply the SPEC's default rules; each fires only strictly above its threshold.

    Ratios are compared with the threshold (not products), so a value exactly at a decimal
    threshold compares equal instead of flipping on floating-point rounding.
    """
    return [
        *_override_alert(inputs, rules),
        *_latency_alerts(inputs, rules),
        *_confidence_alert(inputs, rules),
    ]


def _override_alert(inputs: AlertInputs, rules: Alerts) -> list[Alert]:
    hi = inputs.high_impact_overrides
    if hi.rate is None or hi.rate <= rules.override_rate_max:
        return []
    return [
        Alert(
            rule="override_rate",
            scope="high_impact",
            value=hi.rate,
            threshold=rules.override_rate_max,
            window_minutes=rules.override_window_minutes,
            at=inputs.at,
            message=f"high-impact override rate {hi.rate:.1%} ({hi.overridden}/{hi.reviewed})"
            f" above {rules.override_rate_max:.0%} over {rules.override_window_minutes} min",
        )
    ]


def _latency_alerts(inputs: AlertInputs, rules: Alerts) -> list[Alert]:
    alerts = []
    for route, lat in inputs.latency.items():
        median, sla = lat.median_minutes, lat.median_sla_minutes
        if median is None or not sla or median / sla <= rules.latency_sla_factor_max:
            continue
        alerts.append(
            Alert(
                rule="review_latency",
                scope=route,
                value=median / sla,
                threshold=rules.latency_sla_factor_max,
                window_minutes=rules.latency_window_minutes,
                at=inputs.at,
                message=f"{route}: median review latency {median:.0f} min is above"
                f" {rules.latency_sla_factor_max}x the {sla:.0f} min SLA"
                f" over {rules.latency_window_minutes} min",
            )
        )
    return alerts


def _confidence_alert(inputs: AlertInputs, rules: Alerts) -> list[Alert]:
    base, mean = inputs.baseline_confidence, inputs.mean_confidence
    if not base or mean is None or mean / base >= 1 - rules.confidence_drop_max:
        return []
    drop = 1 - mean / base
    return [
        Alert(
            rule="confidence_drop",
            scope="all",
            value=drop,
            threshold=rules.confidence_drop_max,
            window_minutes=None,
            at=inputs.at,
            message=f"mean model confidence {mean:.3f} is down {drop:.0%} against the"
            f" baseline {base:.3f} (limit {rules.confidence_drop_max:.0%})",
        )
    ]


def period_review(
    frame: pd.DataFrame, policy: Policy, as_of: datetime
) -> tuple[MonitoringMetrics, list[Alert]]:
    """The QA report's period (the policy's `monitoring.current_days` up to `as_of`): its
    metrics and the alerts its rules fire, the model's confidence judged against what came
    before the period."""
    start = as_of - timedelta(days=policy.monitoring.current_days)
    current = frame[frame["decided_at"] >= start]
    baseline = frame[frame["decided_at"] < start]["confidence"].mean()
    inputs = alert_inputs(current, policy, as_of, None if pd.isna(baseline) else float(baseline))
    return compute_metrics(current, policy, as_of), evaluate_alerts(inputs, policy.alerts)
