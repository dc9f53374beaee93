"""Sustained alert rules on synthetic metric streams: windows, breaks, gaps, de-duplication,
cooldown and resolution at their boundaries; and each rule's measure at its threshold."""

from datetime import datetime, timedelta

import pandas as pd
import pytest

from fraudloop.policy import Policy, load_policy
from fraudloop.settings import PACKAGE_DIR
from monitoring.alert_rules import (
    CONFIDENCE,
    LATENCY,
    OVERRIDE,
    AlertState,
    Observation,
    confidence_observation,
    evaluate,
    latency_observation,
    observe,
    override_observation,
    step,
)

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
RULES = POLICY.alerts
T0 = datetime(2026, 11, 2, 9, 0)
EVERY = timedelta(minutes=5)  # the schedule's cadence (`schedules.alerts_minutes`)
WINDOWS = {
    OVERRIDE: RULES.override_window_minutes,
    LATENCY: RULES.latency_window_minutes,
    CONFIDENCE: RULES.confidence_window_minutes,
}
HIGH = POLICY.high_impact.amount_above + 100  # inside the `large` category


def obs(rule: str, value: float | None, threshold: float = 1.0) -> Observation:
    return Observation(
        rule=rule,
        scope="s",
        value=value,
        threshold=threshold,
        window_minutes=WINDOWS[rule],
        detail="synthetic",
    )


def run(
    rule: str, values: list[float | None], policy: Policy = POLICY, every: timedelta = EVERY
) -> tuple[list[tuple[int, str]], AlertState]:
    """Feed one value per evaluation; (minute since T0, kind) of every notice, and the state."""
    state = AlertState(rule=rule, scope="s")
    sent = []
    for i, value in enumerate(values):
        now = T0 + i * every
        state, notice = step(state, obs(rule, value), policy, now)
        if notice is not None:
            sent.append((int((now - T0).total_seconds() // 60), notice.kind))
    return sent, state


def evaluations(minutes: int) -> int:
    """How many evaluations, from T0, until `minutes` have passed (inclusive)."""
    return minutes // 5 + 1


@pytest.mark.parametrize("rule", [OVERRIDE, LATENCY, CONFIDENCE])
def test_fires_once_breached_for_its_window_and_not_a_moment_before(rule: str) -> None:
    window = WINDOWS[rule]
    sent, _ = run(rule, [2.0] * (evaluations(window) - 1))
    assert sent == []  # one evaluation short of the window
    sent, state = run(rule, [2.0] * evaluations(window))
    assert sent == [(window, "alert")]
    assert state.active_since == T0 + timedelta(minutes=window)
    assert state.first_breach_at == T0


def test_an_active_alert_is_sent_once_however_long_the_breach_lasts() -> None:
    sent, state = run(OVERRIDE, [2.0] * evaluations(6 * 60))
    assert sent == [(60, "alert")]
    assert state.active_since is not None


def test_a_break_in_the_breach_restarts_its_window() -> None:
    # breached 55 min, one value at the threshold (not above it), then breached again
    values = [2.0] * 12 + [1.0] + [2.0] * evaluations(60)
    sent, _ = run(OVERRIDE, values)
    assert sent == [(65 + 60, "alert")]


def test_no_data_breaks_the_clock_but_does_not_resolve() -> None:
    sent, _ = run(OVERRIDE, [2.0] * 12 + [None] + [2.0] * 12)
    assert sent == []  # no evaluation saw 60 unbroken minutes
    sent, state = run(OVERRIDE, [2.0] * 13 + [None] * 10 + [2.0])
    assert sent == [(60, "alert")]
    assert state.active_since is not None  # no data is not a recovery


def test_a_gap_between_evaluations_restarts_the_window() -> None:
    longer = timedelta(minutes=RULES.max_gap_minutes + 1)
    sent, _ = run(LATENCY, [2.0] * 10, every=longer)
    assert [kind for _, kind in sent] == []  # each evaluation starts a new breach
    allowed = timedelta(minutes=RULES.max_gap_minutes)
    sent, _ = run(
        LATENCY, [2.0] * (RULES.latency_window_minutes // RULES.max_gap_minutes + 1), every=allowed
    )
    assert [kind for _, kind in sent] == ["alert"]


def test_clearing_sends_one_resolution_with_its_value_threshold_and_window() -> None:
    state = AlertState(rule=LATENCY, scope="s")
    for i in range(evaluations(30)):
        state, _ = step(state, obs(LATENCY, 2.0, 1.5), POLICY, T0 + i * EVERY)
    now = T0 + timedelta(minutes=35)
    state, notice = step(state, obs(LATENCY, 1.5, 1.5), POLICY, now)  # exactly at: clear
    assert notice is not None and notice.kind == "resolution"
    assert (notice.value, notice.threshold, notice.window_minutes) == (1.5, 1.5, 30)
    assert notice.tier == RULES.tier and notice.contacts
    assert state.active_since is None and state.resolved_at == now
    state, again = step(state, obs(LATENCY, 1.0, 1.5), POLICY, now + EVERY)
    assert again is None


def test_cooldown_keeps_a_flapping_rule_quiet_then_lets_it_fire() -> None:
    window, cooldown = RULES.latency_window_minutes, RULES.cooldown_minutes
    assert cooldown > window + 5, "the policy's cooldown must outlast a second window here"
    flap = [2.0] * evaluations(window) + [1.0] + [2.0] * (cooldown // 5)
    sent, state = run(LATENCY, flap)
    fired_at = window
    assert sent[:2] == [(fired_at, "alert"), (fired_at + 5, "resolution")]
    # sustained again from fired_at + 10, long enough, but only fires once the cooldown is over
    assert sent[2:] == [(fired_at + cooldown, "alert")]
    assert state.last_fired_at == T0 + timedelta(minutes=fired_at + cooldown)


def test_without_cooldown_a_sustained_second_breach_fires_again() -> None:
    policy = POLICY.model_copy(update={"alerts": RULES.model_copy(update={"cooldown_minutes": 0})})
    window = RULES.latency_window_minutes
    sent, _ = run(
        LATENCY, [2.0] * evaluations(window) + [1.0] + [2.0] * evaluations(window), policy
    )
    assert [m for m, _ in sent] == [window, window + 5, window + 10 + window]


def test_evaluate_keeps_scopes_apart_and_unobserved_states_untouched() -> None:
    other = AlertState(rule=OVERRIDE, scope="gone", active_since=T0)
    states = {("override_rate", "gone"): other}
    for i in range(evaluations(60)):
        a = obs(OVERRIDE, 2.0).model_copy(update={"scope": "a"})
        b = obs(OVERRIDE, 0.5).model_copy(update={"scope": "b"})
        states, sent = evaluate(states, [a, b], POLICY, T0 + i * EVERY)
    assert [(n.scope, n.kind) for n in sent] == [("a", "alert")]
    assert states[("override_rate", "gone")] == other
    assert states[("override_rate", "b")].first_breach_at is None


# --- each rule's measure, from a decisions frame ------------------------------------------------

NOW = T0 + timedelta(hours=3)


def row(
    amount: float = HIGH,
    recommendation: str = "reject",
    final: str | None = "human_reject",
    *,
    closed_minutes_ago: float | None = 1,
    age_minutes: float = 20,
    sla: float = 30,
    route: str = "sync_review",
    confidence: float = 0.9,
    decided_minutes_ago: float = 1,
) -> dict:
    created = NOW - timedelta(minutes=age_minutes)
    return {
        "decided_at": NOW - timedelta(minutes=decided_minutes_ago),
        "route": route,
        "recommendation": recommendation,
        "final_decision": final if closed_minutes_ago is not None else None,
        "confidence": confidence,
        "amount": amount,
        "review_created_at": created,
        "reviewed_at": None
        if closed_minutes_ago is None
        else NOW - timedelta(minutes=closed_minutes_ago),
        "sla_due_at": created + timedelta(minutes=sla),
    }


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for column in ("decided_at", "reviewed_at", "review_created_at", "sla_due_at"):
        df[column] = pd.to_datetime(df[column])
    return df


def overrides(n: int, overridden: int, amount: float = HIGH, **kw: float) -> list[dict]:
    return [
        row(amount, final="human_approve" if i < overridden else "human_reject", **kw)
        for i in range(n)
    ]


LARGE = RULES.categories["large"]


@pytest.mark.parametrize(
    ("n", "overridden", "breached"),
    [(20, 3, False), (20, 4, True), (4, 4, None)],  # 15 % is not above 15 %; 4 reviews: no data
)
def test_override_rate_at_its_threshold_and_minimum(
    n: int, overridden: int, breached: bool | None
) -> None:
    got = override_observation(frame(overrides(n, overridden)), POLICY, NOW, "large", LARGE)
    if breached is None:
        assert got.value is None and not got.breached
    else:
        assert got.value == overridden / n and got.breached is breached


def test_override_rate_counts_only_its_band_and_its_period() -> None:
    in_band = overrides(20, 4)
    outside = overrides(20, 20, amount=POLICY.high_impact.amount_above)  # not high-impact
    above = overrides(20, 20, amount=LARGE.up_to + 1)  # the next band up
    old = overrides(20, 20, closed_minutes_ago=RULES.measure_minutes + 1)  # before the period
    got = override_observation(frame(in_band + outside + above + old), POLICY, NOW, "large", LARGE)
    assert got.value == 4 / 20
    edge = overrides(20, 20, amount=LARGE.up_to)  # the band's upper bound is inside it
    assert override_observation(frame(edge), POLICY, NOW, "large", LARGE).value == 1.0


@pytest.mark.parametrize(("latency", "breached"), [(45, False), (46, True)])
def test_latency_at_its_threshold(latency: float, breached: bool) -> None:
    rows = [
        row(age_minutes=latency + 1, closed_minutes_ago=1, sla=30)
    ] * 3  # closed after `latency`
    got = latency_observation(frame(rows), POLICY, NOW, "sync_review")
    assert got.value == pytest.approx(latency / 30) and got.breached is breached


def test_a_stalled_queue_alerts_on_its_open_reviews() -> None:
    """Nobody closes anything: the open reviews' ages are the latency."""
    stalled = [row(closed_minutes_ago=None, age_minutes=90, sla=30)] * 3
    got = latency_observation(frame(stalled), POLICY, NOW, "sync_review")
    assert got.value == 3.0 and got.breached
    assert latency_observation(frame(stalled), POLICY, NOW, "async_review").value is None


@pytest.mark.parametrize(("mean", "breached"), [(0.72, False), (0.7199, True)])
def test_confidence_drop_at_its_threshold(mean: float, breached: bool) -> None:
    baseline = 0.9  # a drop of exactly 20 % is 0.72
    got = confidence_observation(frame([row(confidence=mean)] * 4), POLICY, NOW, baseline)
    assert got.breached is breached
    assert got.value == pytest.approx(1 - mean / baseline)
    assert confidence_observation(frame([row()]), POLICY, NOW, None).value is None


def test_observe_watches_every_category_route_and_the_confidence() -> None:
    got = observe(frame([row()]), POLICY, NOW, 0.9)
    scopes = {(o.rule, o.scope) for o in got}
    assert scopes == {
        *((OVERRIDE, name) for name in RULES.categories),
        (LATENCY, "sync_review"),
        (LATENCY, "async_review"),
        (CONFIDENCE, "all"),
    }
