from datetime import datetime, timedelta
from itertools import count

import pandas as pd
import pytest

from fraudloop.policy import Alerts, Policy, load_policy
from fraudloop.settings import PACKAGE_DIR
from monitoring.metrics import (
    AlertInputs,
    LatencyStats,
    OverrideRate,
    alert_inputs,
    compute_metrics,
    evaluate_alerts,
    override_rate,
    review_latency,
    route_counts,
)

T0 = datetime(2026, 11, 2, 9, 0)
IDS = count()
COLUMNS = [
    "transaction_id",
    "decided_at",
    "route",
    "recommendation",
    "final_decision",
    "score",
    "confidence",
    "amount",
    "review_created_at",
    "reviewed_at",
    "sla_due_at",
    "reviewer",
]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(PACKAGE_DIR / "policy.yaml")


@pytest.fixture(scope="module")
def rules(policy: Policy) -> Alerts:
    return policy.alerts


def decision(
    route: str,
    recommendation: str,
    final: str | None,
    *,
    latency: float | None = None,
    sla: float = 30,
    amount: float = 50.0,
    score: float = 0.8,
) -> dict:
    """One decisions-table row; review rows are created at T0, `latency` minutes to close."""
    review = route.endswith("review")
    return {
        "transaction_id": f"t{next(IDS)}",
        "decided_at": T0,
        "route": route,
        "recommendation": recommendation,
        "final_decision": final,
        "score": score,
        "confidence": max(score, 1 - score),
        "amount": amount,
        "review_created_at": T0 if review else pd.NaT,
        "reviewed_at": T0 + timedelta(minutes=latency) if latency is not None else pd.NaT,
        "sla_due_at": T0 + timedelta(minutes=sla) if review else pd.NaT,
        "reviewer": "r1" if latency is not None else None,
    }


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)


def test_override_rate_compares_human_decision_with_recommendation():
    df = frame(
        decision("sync_review", "reject", "human_approve", latency=10),  # override
        decision("sync_review", "reject", "human_reject", latency=10),
        decision("async_review", "approve", "human_reject", latency=10),  # override
        decision("async_review", "reject", "human_reject", latency=10),
    )
    assert override_rate(df) == OverrideRate(reviewed=4, overridden=2, rate=0.5)


def test_override_rate_excludes_pending_escalated_and_auto_decisions():
    df = frame(
        decision("sync_review", "reject", "human_approve", latency=10),
        decision("sync_review", "reject", None),  # pending
        decision("async_review", "reject", "escalated", latency=20),
        decision("auto_allow", "approve", "auto_approve", score=0.1),
        decision("auto_block", "reject", "auto_reject", score=0.99),
    )
    assert override_rate(df) == OverrideRate(reviewed=1, overridden=1, rate=1.0)


def test_override_rate_is_none_without_human_decisions():
    df = frame(decision("sync_review", "reject", None))
    assert override_rate(df).rate is None


def test_route_counts():
    df = frame(
        decision("auto_allow", "approve", "auto_approve"),
        decision("auto_allow", "approve", "auto_approve"),
        decision("fallback_block", "reject", "auto_reject"),
    )
    assert route_counts(df) == {"auto_allow": 2, "fallback_block": 1}


def test_review_latency_and_sla_compliance_per_route():
    df = frame(
        decision("sync_review", "reject", "human_reject", latency=10, sla=30),
        decision("sync_review", "reject", "human_reject", latency=30, sla=30),  # on time
        decision("sync_review", "reject", "human_reject", latency=50, sla=30),  # late
        decision("async_review", "reject", "human_reject", latency=100, sla=120),
        decision("async_review", "reject", None, sla=120),  # open, not yet due
    )
    stats = review_latency(df, now=T0 + timedelta(minutes=60))
    sync, async_ = stats["sync_review"], stats["async_review"]
    assert (sync.reviewed, sync.median_minutes, sync.median_sla_minutes) == (3, 30.0, 30.0)
    assert sync.p90_minutes == pytest.approx(46.0)
    assert sync.sla_compliance == pytest.approx(2 / 3)
    assert (async_.reviewed, async_.sla_compliance, async_.open_overdue) == (1, 1.0, 0)


def test_open_review_past_due_counts_as_breach():
    df = frame(
        decision("sync_review", "reject", "human_reject", latency=10, sla=30),
        decision("sync_review", "reject", None, sla=30),
    )
    assert review_latency(df)["sync_review"].sla_compliance == 1.0
    late = review_latency(df, now=T0 + timedelta(minutes=31))["sync_review"]
    assert (late.open_overdue, late.sla_compliance) == (1, 0.5)


def test_compute_metrics_headline_counts(policy: Policy):
    big = policy.high_impact.amount_above + 1
    df = frame(
        decision("auto_allow", "approve", "auto_approve", score=0.1),
        decision("auto_block", "reject", "auto_reject", score=0.99),
        decision("sync_review", "reject", "human_approve", latency=5, amount=big),
        decision("async_review", "reject", "human_reject", latency=5),
        decision("async_review", "reject", None),
    )
    m = compute_metrics(df, policy)
    assert (m.scored, m.auto_allowed, m.auto_blocked, m.sent_to_review) == (5, 1, 1, 3)
    assert (m.overrides.reviewed, m.overrides.overridden) == (2, 1)
    assert m.high_impact_overrides == OverrideRate(reviewed=1, overridden=1, rate=1.0)
    assert sum(sum(c) for c in m.score_histogram.values()) == 5
    assert m.daily_volume == {"2026-11-02": {r: n for r, n in m.routes.items()}}


def _inputs(
    override: OverrideRate | None = None,
    latency: dict[str, LatencyStats] | None = None,
    mean: float | None = None,
    baseline: float | None = None,
) -> AlertInputs:
    return AlertInputs(
        at=T0,
        high_impact_overrides=override or OverrideRate(reviewed=0, overridden=0, rate=None),
        latency=latency or {},
        mean_confidence=mean,
        baseline_confidence=baseline,
    )


@pytest.mark.parametrize(("extra", "fires"), [(-1, False), (0, False), (1, True)])
def test_override_alert_fires_only_above_threshold(rules: Alerts, extra: int, fires: bool):
    reviewed = 100
    overridden = round(rules.override_rate_max * reviewed) + extra
    rate = OverrideRate(reviewed=reviewed, overridden=overridden, rate=overridden / reviewed)
    alerts = evaluate_alerts(_inputs(override=rate), rules)
    assert [a.rule for a in alerts] == (["override_rate"] if fires else [])


@pytest.mark.parametrize(("extra", "fires"), [(-1.0, False), (0.0, False), (0.5, True)])
def test_latency_alert_fires_only_above_sla_factor(rules: Alerts, extra: float, fires: bool):
    sla = 30.0
    median = rules.latency_sla_factor_max * sla + extra
    stats = LatencyStats(
        reviewed=5,
        median_minutes=median,
        p90_minutes=median,
        median_sla_minutes=sla,
        sla_compliance=0.0,
        open_overdue=0,
    )
    alerts = evaluate_alerts(_inputs(latency={"sync_review": stats}), rules)
    assert [(a.rule, a.scope) for a in alerts] == (
        [("review_latency", "sync_review")] if fires else []
    )


@pytest.mark.parametrize(("extra", "fires"), [(0.01, False), (0.0, False), (-0.01, True)])
def test_confidence_alert_fires_only_when_drop_exceeds_limit(
    rules: Alerts, extra: float, fires: bool
):
    baseline = 1.0
    mean = baseline * (1 - rules.confidence_drop_max) + extra
    alerts = evaluate_alerts(_inputs(mean=mean, baseline=baseline), rules)
    assert [a.rule for a in alerts] == (["confidence_drop"] if fires else [])


def test_no_alerts_without_data_or_baseline(rules: Alerts):
    assert evaluate_alerts(_inputs(mean=0.1), rules) == []


def test_alert_inputs_use_trailing_windows(policy: Policy):
    window = policy.alerts.override_window_minutes
    big = policy.high_impact.amount_above + 1
    now = T0 + timedelta(minutes=2 * window)
    df = frame(
        # closed inside the override window: counts
        decision("sync_review", "reject", "human_approve", latency=1.5 * window, amount=big),
        # closed before the window: ignored
        decision("sync_review", "reject", "human_approve", latency=0.5 * window, amount=big),
        # inside the window but not high impact: ignored
        decision("sync_review", "reject", "human_approve", latency=1.5 * window),
    )
    inputs = alert_inputs(df, policy, now, baseline_confidence=0.9)
    assert inputs.high_impact_overrides == OverrideRate(reviewed=1, overridden=1, rate=1.0)
    assert [a.rule for a in evaluate_alerts(inputs, policy.alerts)] == ["override_rate"]
