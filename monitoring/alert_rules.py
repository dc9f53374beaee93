"""SPEC's three alerts as sustained conditions: state in, state and notices out, no I/O.

Every evaluation (the `evaluate-alerts` flow, every few minutes) measures each rule per scope over
the trailing `alerts.measure_minutes` (`observe`), then `step` moves that rule's state:
a breach starts a clock; a rule fires once the breach has lasted its window without a break
(an evaluation with no data, or a gap between evaluations longer than `alerts.max_gap_minutes`,
restarts it); an active alert fires nothing more (de-duplicated) until a measured value is back
within its threshold, which resolves it; after firing, a rule stays quiet for
`alerts.cooldown_minutes`, so a flapping condition pages once, not every window.

The frame is `fraudloop.decisions.monitoring_frame`'s (decided_at, route, recommendation,
final_decision, confidence, amount, review_created_at, reviewed_at, sla_due_at); thresholds,
windows and categories come from the policy.
"""

from datetime import datetime, timedelta

import pandas as pd
from pydantic import BaseModel, ConfigDict

from fraudloop.alerts import Alert
from fraudloop.policy import REVIEW_ROUTES, AmountBand, Policy
from monitoring.metrics import override_rate

OVERRIDE, LATENCY, CONFIDENCE = "override_rate", "review_latency", "confidence_drop"
ALL = "all"  # the scope of a rule measured over everything (confidence)
DIGITS = 9  # a measure is compared at this precision: one at its threshold is not above it


class Observation(BaseModel):
    """One rule's measure for one scope at one evaluation; `value` None means no data."""

    model_config = ConfigDict(frozen=True)

    rule: str
    scope: str
    value: float | None
    threshold: float
    window_minutes: int
    detail: str  # what was measured, for the message

    @property
    def breached(self) -> bool:
        """Strictly above the threshold, ratios compared exactly (`above`)."""
        return above(self.value, self.threshold)


class AlertState(BaseModel):
    """What one rule knows about one scope between evaluations (a row of `alert_state`)."""

    model_config = ConfigDict(frozen=True)

    rule: str
    scope: str
    evaluated_at: datetime | None = None
    last_value: float | None = None
    first_breach_at: datetime | None = None  # start of the breach still going on, if any
    active_since: datetime | None = None  # the alert fired then and has not resolved
    last_fired_at: datetime | None = None  # for the cooldown
    resolved_at: datetime | None = None


def step(
    state: AlertState, obs: Observation, policy: Policy, now: datetime
) -> tuple[AlertState, Alert | None]:
    """The rule's next state, and the alert or resolution this evaluation must send, if any."""
    rules = policy.alerts
    gap = state.evaluated_at is None or now - state.evaluated_at > _minutes(rules.max_gap_minutes)
    breach_from = (state.first_breach_at if not gap else None) or now
    moved = state.model_copy(
        update={
            "evaluated_at": now,
            "last_value": obs.value,
            "first_breach_at": breach_from if obs.breached else None,
        }
    )
    if state.active_since is not None:
        if obs.value is None or obs.breached:
            return moved, None  # still active (no data is not a recovery): sent once already
        resolved = moved.model_copy(update={"active_since": None, "resolved_at": now})
        return resolved, notice(obs, policy, now, "resolution")
    sustained = obs.breached and now - breach_from >= _minutes(obs.window_minutes)
    cooled = state.last_fired_at is None or now - state.last_fired_at >= _minutes(
        rules.cooldown_minutes
    )
    if not (sustained and cooled):
        return moved, None
    fired = moved.model_copy(update={"active_since": now, "last_fired_at": now})
    return fired, notice(obs, policy, now, "alert")


def evaluate(
    states: dict[tuple[str, str], AlertState],
    observations: list[Observation],
    policy: Policy,
    now: datetime,
) -> tuple[dict[tuple[str, str], AlertState], list[Alert]]:
    """Step every observed rule and scope; states of scopes not observed are kept as they are."""
    out = dict(states)
    alerts: list[Alert] = []
    for obs in observations:
        key = (obs.rule, obs.scope)
        out[key], sent = step(
            states.get(key, AlertState(rule=obs.rule, scope=obs.scope)), obs, policy, now
        )
        if sent is not None:
            alerts.append(sent)
    return out, alerts


def notice(obs: Observation, policy: Policy, now: datetime, kind: str) -> Alert:
    """The alert (or its resolution) as the sinks and the audit trail get it."""
    tier = policy.alerts.tier
    what = (
        f"above {obs.threshold:g} for {obs.window_minutes} min"
        if kind == "alert"
        else f"back within {obs.threshold:g}"
    )
    return Alert(
        rule=obs.rule,
        scope=obs.scope,
        value=obs.value if obs.value is not None else float("nan"),
        threshold=obs.threshold,
        window_minutes=obs.window_minutes,
        at=now,
        message=f"{obs.rule} [{obs.scope}]: {obs.detail}, {what}",
        kind="alert" if kind == "alert" else "resolution",
        tier=tier,
        contacts=list(policy.escalation.matrix[tier].contacts),
    )


def observe(
    frame: pd.DataFrame, policy: Policy, now: datetime, baseline_confidence: float | None
) -> list[Observation]:
    """Every rule for every scope it watches, over the trailing measure period ending at now."""
    return [
        *(
            override_observation(frame, policy, now, name, band)
            for name, band in policy.alerts.categories.items()
        ),
        *(latency_observation(frame, policy, now, str(route)) for route in REVIEW_ROUTES),
        confidence_observation(frame, policy, now, baseline_confidence),
    ]


def override_observation(
    frame: pd.DataFrame, policy: Policy, now: datetime, category: str, band: AmountBand
) -> Observation:
    """Override rate of the high-impact reviews of one amount band decided in the period;
    fewer than `alerts.override_min_reviews` is no data (two overrides in three is noise)."""
    rules = policy.alerts
    amount = frame["amount"]
    inside = (amount > max(band.above, policy.high_impact.amount_above)) & (
        amount <= (band.up_to if band.up_to is not None else float("inf"))
    )
    closed = _in_period(frame["reviewed_at"], now, rules.measure_minutes)
    rate = override_rate(frame[inside & closed])
    value = rate.rate if rate.reviewed >= rules.override_min_reviews else None
    return Observation(
        rule=OVERRIDE,
        scope=category,
        value=value,
        threshold=rules.override_rate_max,
        window_minutes=rules.override_window_minutes,
        detail=f"{rate.overridden} of {rate.reviewed} high-impact reviews overridden",
    )


def latency_observation(
    frame: pd.DataFrame, policy: Policy, now: datetime, route: str
) -> Observation:
    """Median review latency as a multiple of the SLA for one review route: reviews closed in
    the period, and reviews still open at `now` at their age so far (a stalled queue closes
    nothing, and must still alert)."""
    rules = policy.alerts
    rows = frame[(frame["route"] == route) & (frame["review_created_at"] <= now)]
    still_open = rows["reviewed_at"].isna() | (rows["reviewed_at"] > now)
    closed = _in_period(rows["reviewed_at"], now, rules.measure_minutes)
    ends = rows["reviewed_at"].where(~still_open, pd.Timestamp(now))
    chosen = still_open | closed
    latency = (ends - rows["review_created_at"])[chosen].dt.total_seconds() / 60
    sla = (rows["sla_due_at"] - rows["review_created_at"])[chosen].dt.total_seconds() / 60
    if latency.empty or not sla.median() > 0:
        value, detail = None, "no review closed or open"
    else:
        median, sla_minutes = float(latency.median()), float(sla.median())
        value = median / sla_minutes
        detail = (
            f"median latency {median:.0f} min of {len(latency)} reviews"
            f" ({int(still_open[chosen].sum())} open) against a {sla_minutes:.0f} min SLA"
        )
    return Observation(
        rule=LATENCY,
        scope=route,
        value=value,
        threshold=rules.latency_sla_factor_max,
        window_minutes=rules.latency_window_minutes,
        detail=detail,
    )


def confidence_observation(
    frame: pd.DataFrame, policy: Policy, now: datetime, baseline: float | None
) -> Observation:
    """Relative drop of the mean model confidence of the period's decisions from the baseline
    (`baseline_period`)."""
    rules = policy.alerts
    conf = frame.loc[_in_period(frame["decided_at"], now, rules.measure_minutes), "confidence"]
    conf = conf.dropna()
    if conf.empty or not baseline:
        value, detail = None, "no scored decision or no baseline"
    else:
        mean = float(conf.mean())
        value = 1 - mean / baseline
        detail = f"mean confidence {mean:.3f} of {len(conf)} decisions, baseline {baseline:.3f}"
    return Observation(
        rule=CONFIDENCE,
        scope=ALL,
        value=value,
        threshold=rules.confidence_drop_max,
        window_minutes=rules.confidence_window_minutes,
        detail=detail,
    )


def baseline_period(policy: Policy, now: datetime) -> tuple[datetime, datetime]:
    """Where the confidence baseline is measured: the `monitoring.reference_days` before the
    rule's window and measure period, so a drop is never part of its own baseline."""
    rules = policy.alerts
    end = now - _minutes(rules.measure_minutes + rules.confidence_window_minutes)
    return end - timedelta(days=policy.monitoring.reference_days), end


def lookback(policy: Policy, now: datetime) -> datetime:
    """The earliest review close or decision `observe` looks at (open reviews: any age)."""
    return now - _minutes(policy.alerts.measure_minutes)


def above(value: float | None, threshold: float) -> bool:
    """Strictly above, at `DIGITS` decimals: 0.72 against 0.9 is a drop of exactly 20 %, though
    floating point makes it 0.20000000000000007."""
    return value is not None and round(value, DIGITS) > round(threshold, DIGITS)


def _in_period(stamps: pd.Series, now: datetime, minutes: int) -> pd.Series:
    return (stamps > now - _minutes(minutes)) & (stamps <= now)


def _minutes(n: int) -> timedelta:
    return timedelta(minutes=n)
