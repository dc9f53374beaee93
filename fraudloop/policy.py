"""The versioned decision policy (YAML -> pydantic) and the router that applies it."""

import math
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudloop.yaml_config import load_yaml


class Route(StrEnum):
    AUTO_ALLOW = "auto_allow"
    AUTO_BLOCK = "auto_block"
    SYNC_REVIEW = "sync_review"
    ASYNC_REVIEW = "async_review"


REVIEW_ROUTES = (Route.SYNC_REVIEW, Route.ASYNC_REVIEW)
TIER2_QUEUE = "tier2"
SIGNOFF_QUEUE = "second_signoff"
ACTIVE_LEARNING_QUEUE = "active_learning"  # picks within the budget: an answer is a label only
EXPLORATION = "exploration"  # a random pick's strategy, and the source of its answer's label
POST_VERIFY_QUEUE = "post_verify"  # the weekly audit sample: an answer is a label only
# queues whose answers are labels only: the automatic decision stays final
LABEL_ONLY_QUEUES = (ACTIVE_LEARNING_QUEUE, POST_VERIFY_QUEUE)
# Tier 3 is a page, never a queue
QUEUES = (*REVIEW_ROUTES, SIGNOFF_QUEUE, TIER2_QUEUE, *LABEL_ONLY_QUEUES)


class Strategy(StrEnum):
    """How `pipeline.selection` picks what people review beyond the router."""

    TOP_SCORE = "top_score"
    UNCERTAINTY = "uncertainty"
    DIVERSITY = "diversity"
    IMPACT = "impact"
    MIX = "mix"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FraudRules(_Strict):
    block_above: float = Field(ge=0, le=1)
    review_from: float = Field(ge=0, le=1)
    sync_score_from: float = Field(ge=0, le=1)
    low_confidence_below: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "FraudRules":
        if not self.review_from <= self.sync_score_from <= self.block_above:
            raise ValueError("need review_from <= sync_score_from <= block_above")
        return self


class GenericRules(_Strict):
    sync_risk_from: float = Field(ge=0, le=1)
    sync_confidence_below: float = Field(ge=0, le=1)
    async_confidence_below: float = Field(ge=0, le=1)
    async_risk_above: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "GenericRules":
        if self.sync_confidence_below > self.async_confidence_below:
            raise ValueError("need sync_confidence_below <= async_confidence_below")
        if self.async_risk_above >= self.sync_risk_from:
            raise ValueError("need async_risk_above < sync_risk_from")
        return self


class HighImpact(_Strict):
    amount_above: float = Field(ge=0)


class Sla(_Strict):
    sync_review: int = Field(gt=0)
    async_review: int = Field(gt=0)
    tier2: int = Field(gt=0)
    second_signoff: int = Field(gt=0)
    active_learning: int = Field(gt=0)
    post_verify: int = Field(gt=0)


class Queue(_Strict):
    tier: int = Field(ge=1, le=2)
    description: str
    priority_factor: float = Field(default=1.0, gt=0, le=1)  # x score x amount (`queue_priority`)
    escalate_on_breach: bool = True  # past its SLA, the sweep moves a case to Tier 2


class SimilarWeights(_Strict):
    """How much nearer a past case is for sharing the customer or the terminal, in standard
    deviations of the numeric features (`labeling.review.similar`)."""

    same_customer: float = Field(ge=0)
    same_terminal: float = Field(ge=0)


class Contacts(_Strict):
    """One row of the escalation matrix: the team a tier reaches and how to reach it."""

    team: str = Field(min_length=1)
    contacts: list[str] = Field(min_length=1)


class Escalation(_Strict):
    page_on_tier2_breach: bool
    page_on_senior_escalation: bool
    incident_amount_above: float = Field(ge=0)
    age_boost_per_hour: float = Field(ge=0)
    similar_cases: int = Field(ge=0)
    similar_pool: int = Field(gt=0)
    similar_weights: SimilarWeights
    page_target: str = Field(pattern=r"^(log|https?://\S+)$")  # Tier 3 pages: log or a webhook
    matrix: dict[int, Contacts]  # tier -> who it reaches; alerts and pages carry the contacts

    @model_validator(mode="after")
    def _every_tier_reachable(self) -> "Escalation":
        missing = {1, 2, 3} - set(self.matrix)
        if missing:
            raise ValueError(f"escalation.matrix needs tiers {sorted(missing)}")
        return self


class Fallback(_Strict):
    """The rules that decide without a model (`fallback_hits`). Left out, `flagged_card_days`
    turns the card rule off and `below_review_amount` is `allow`: a policy file written before
    them keeps the routes it had."""

    block_amount_above: float = Field(ge=0)
    review_amount_above: float = Field(ge=0)
    watchlist_terminals: list[str] = []
    flagged_card_days: int | None = Field(default=None, gt=0)
    flagged_card_action: Literal["review", "block"] = "review"
    below_review_amount: Literal["allow", "review"] = "allow"

    @model_validator(mode="after")
    def _ordered(self) -> "Fallback":
        if self.review_amount_above > self.block_amount_above:
            raise ValueError("need review_amount_above <= block_amount_above")
        return self


class Review(_Strict):
    micro_batch: int = Field(gt=0)
    daily_budget: int = Field(ge=0)


class ActiveLearning(_Strict):
    """What people review beyond the router, within `review.daily_budget` (`pipeline.selection`)."""

    strategy: Strategy
    exploration_share: float = Field(ge=0, le=1)
    pace_hourly: bool
    diversity_pool: int = Field(gt=0)
    mix: dict[Strategy, float] = Field(min_length=1)
    seed: int
    estimate_confidence: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _mix_is_a_split(self) -> "ActiveLearning":
        if Strategy.MIX in self.mix or any(share <= 0 for share in self.mix.values()):
            raise ValueError("mix: positive shares of top_score, uncertainty, diversity, impact")
        if not math.isclose(sum(self.mix.values()), 1.0):
            raise ValueError(f"mix: shares must sum to 1, got {sum(self.mix.values()):g}")
        return self


class Learning(_Strict):
    chargeback_delay_days: int = Field(ge=0)
    train_window_days: int = Field(gt=0)
    promotion_metric: str
    promotion_min_gain: float
    holdout_days: int = Field(gt=0)


class Monitoring(_Strict):
    current_days: int = Field(gt=0)
    reference_days: int = Field(gt=0)


class Schedules(_Strict):
    score_intake_seconds: int = Field(gt=0)
    sync_minutes: int = Field(gt=0)
    sla_sweep_minutes: int = Field(gt=0)
    chargebacks_cron: str
    drift_cron: str
    retrain_cron: str
    report_cron: str
    alerts_minutes: int = Field(gt=0)
    checkpoint_cron: str
    sync_overlap_seconds: int = Field(ge=0)
    model_qa_cron: str  # the monthly model QA (`monthly-model-qa`)
    audit_sample_cron: str  # the weekly post-verify audit sample (`audit-sample`)
    crashed_reruns_max: int = Field(ge=0)  # a crashed `score-batch` is run again at most this often


class Segments(_Strict):
    """The segments the QA reports cut false positives and negatives by: each list holds the
    lower edges of its bands, ascending (the last band is open-ended)."""

    amount: list[float] = Field(min_length=1)
    hour_of_day: list[float] = Field(min_length=1)
    customer_tenure_days: list[float] = Field(min_length=1)
    terminal_risk: list[float] = Field(min_length=1)  # known-fraud share of a terminal's payments
    terminal_risk_days: int = Field(gt=0)  # ... over this many days before the period
    known_terminal_days: int = Field(gt=0)  # a terminal paid at this recently is known

    @model_validator(mode="after")
    def _ascending(self) -> "Segments":
        for name in ("amount", "hour_of_day", "customer_tenure_days", "terminal_risk"):
            edges = getattr(self, name)
            if edges[0] < 0 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ValueError(f"segments.{name}: need ascending lower edges from 0 up")
        return self


class AuditSample(_Strict):
    """The weekly audit of automatic decisions (`pipeline.audit_sample`): a stratified simple
    random sample per final decision goes to the post-verify queue. Post-verify: the automatic
    decision already stands and the sample only measures how often it is wrong (pre-accept,
    holding decisions until checked, is not offered)."""

    mode: Literal["post_verify"]
    auto_approve: int = Field(ge=0)  # auto-allowed decisions drawn per week
    auto_reject: int = Field(ge=0)  # auto-blocked decisions drawn per week
    seed: int  # with the week's end, makes each week's draw reproducible

    def sizes(self) -> dict[str, int]:
        """Sample size per stratum (final decision), in drawing order."""
        return {"auto_approve": self.auto_approve, "auto_reject": self.auto_reject}


class Reports(_Strict):
    """The weekly QA report and the monthly model QA (`monitoring.weekly`, `monitoring.model_qa`)."""

    weekly_days: int = Field(gt=0)
    monthly_days: int = Field(gt=0)
    sla_target: float = Field(gt=0, le=1)
    confidence: float = Field(gt=0, lt=1)
    reliability_bins: int = Field(ge=2)
    maturity_weeks: int = Field(ge=1)
    reviewer_days: int = Field(gt=0)
    sample_rows: int = Field(gt=0)  # a statistic that allows it is computed on a sample beyond
    min_cohort_outcomes: int = Field(gt=0)
    segments: Segments
    audit_sample: AuditSample


class Intake(_Strict):
    """The landing folders: a file is taken once it has not changed for `settle_seconds`."""

    settle_seconds: float = Field(ge=0)


class AmountBand(_Strict):
    """A category of transactions by amount: above `above`, up to `up_to` (None: no limit)."""

    above: float = Field(ge=0)
    up_to: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "AmountBand":
        if self.up_to is not None and self.up_to <= self.above:
            raise ValueError("need up_to > above")
        return self


class Alerts(_Strict):
    override_rate_max: float = Field(ge=0, le=1)
    override_window_minutes: int = Field(gt=0)
    latency_sla_factor_max: float = Field(gt=0)
    latency_window_minutes: int = Field(gt=0)
    confidence_drop_max: float = Field(ge=0, le=1)
    # the sustained rules (`monitoring.alert_rules`): each evaluation measures a trailing period,
    # a rule fires once breached for its window, then keeps quiet for the cooldown
    confidence_window_minutes: int = Field(gt=0)
    measure_minutes: int = Field(gt=0)
    max_gap_minutes: int = Field(gt=0)
    cooldown_minutes: int = Field(ge=0)
    override_min_reviews: int = Field(gt=0)
    tier: int = Field(ge=1, le=3)
    # amount bands the override rule watches, each counting its high-impact transactions only
    categories: dict[str, AmountBand] = Field(min_length=1)


class RateLimits(_Strict):
    """Requests and velocities the API takes, in `limits` notation ("600/minute")."""

    per_api_key: str = Field(pattern=r"^\d+/(second|minute|hour)$")
    per_card: str = Field(pattern=r"^\d+/(second|minute|hour)$")
    per_terminal: str = Field(pattern=r"^\d+/(second|minute|hour)$")


class Limits(_Strict):
    """What the door takes at most; beyond it a record is refused, never truncated silently."""

    quarantine_record_bytes: int = Field(gt=0)  # bigger bad records: an excerpt and their hash
    max_amount: float = Field(gt=0)  # an amount above is refused at the door (422)
    max_text_length: int = Field(gt=0)  # card number, e-mail and IP address, each
    max_body_bytes: int = Field(gt=0)  # an API request body above is refused (413)
    rate: RateLimits


class Policy(_Strict):
    version: str = Field(min_length=1, max_length=32)  # stored with every decision (String(32))
    mode: str = Field(pattern="^(fraud|generic)$")
    fraud: FraudRules
    generic: GenericRules
    high_impact: HighImpact
    sla_minutes: Sla
    queues: dict[str, Queue]
    escalation: Escalation
    fallback: Fallback
    review: Review
    active_learning: ActiveLearning
    learning: Learning
    monitoring: Monitoring
    schedules: Schedules
    intake: Intake
    report: Reports
    alerts: Alerts
    limits: Limits

    @model_validator(mode="after")
    def _fallback_never_allows_high_impact(self) -> "Policy":
        """Without a model, a high-impact amount must at least go to a person."""
        if self.fallback.review_amount_above > self.high_impact.amount_above:
            raise ValueError(
                "fallback.review_amount_above must be <= high_impact.amount_above, or the "
                "fallback rules would auto-allow high-impact amounts"
            )
        return self

    @model_validator(mode="after")
    def _queues_have_slas(self) -> "Policy":
        missing = set(QUEUES) - set(self.queues)
        if missing:
            raise ValueError(f"queues must include {sorted(missing)}")
        for name in self.queues:
            if not isinstance(getattr(self.sla_minutes, name, None), int):
                raise ValueError(f"queue {name!r} has no SLA in sla_minutes")
        return self

    @model_validator(mode="after")
    def _learning_after_the_router(self) -> "Policy":
        """Label requests are optional work: they must never outrank a mandatory review of like
        impact."""
        for queue in LABEL_ONLY_QUEUES:
            if self.priority_factor(queue) >= 1:
                raise ValueError(f"queues.{queue}.priority_factor must be below 1")
        return self

    def queue_sla(self, queue: str) -> int:
        """SLA in minutes of a review queue (every queue has one, checked on load)."""
        return int(getattr(self.sla_minutes, queue))

    def priority_factor(self, queue: str) -> float:
        """What a queue's cases' priority is scaled by (1 outside the policy's queues)."""
        known = self.queues.get(queue)
        return known.priority_factor if known else 1.0

    def sla_for(self, route: Route) -> int | None:
        """SLA in minutes for a review route, None for automatic routes."""
        if route == Route.SYNC_REVIEW:
            return self.sla_minutes.sync_review
        if route == Route.ASYNC_REVIEW:
            return self.sla_minutes.async_review
        return None


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; errors name the field and the problem."""
    return load_yaml(path, Policy, "policy file")


def route(score: float, confidence: float, policy: Policy) -> Route:
    """Route one scored transaction; every score gets exactly one route."""
    if policy.mode == "generic":
        return _route_generic(score, confidence, policy.generic)
    rules = policy.fraud
    if score > rules.block_above:
        return Route.AUTO_BLOCK
    if score < rules.review_from:
        return Route.AUTO_ALLOW
    if score >= rules.sync_score_from or confidence < rules.low_confidence_below:
        return Route.SYNC_REVIEW
    return Route.ASYNC_REVIEW


def route_transaction(score: float, confidence: float, amount: float, policy: Policy) -> Route:
    """`route`, and a person for what the model would allow above the high-impact amount: a
    low score on a huge amount is no reason to let it through unseen."""
    routed = route(score, confidence, policy)
    if routed is Route.AUTO_ALLOW and is_high_impact(amount, policy):
        return Route.ASYNC_REVIEW
    return routed


def _route_generic(risk: float, confidence: float, rules: GenericRules) -> Route:
    if risk >= rules.sync_risk_from or confidence < rules.sync_confidence_below:
        return Route.SYNC_REVIEW
    if confidence < rules.async_confidence_below or risk > rules.async_risk_above:
        return Route.ASYNC_REVIEW
    return Route.AUTO_ALLOW


class FallbackRule(StrEnum):
    """A fallback rule, named for the `fallback` field that sets it: the name a decision's
    reasons and audit event carry."""

    BLOCK_AMOUNT = "block_amount_above"
    WATCHLIST = "watchlist_terminals"
    FLAGGED_CARD = "flagged_card_days"
    REVIEW_AMOUNT = "review_amount_above"
    BELOW_REVIEW = "below_review_amount"


@dataclass(frozen=True)
class RuleRoute:
    """A fallback rule and the route it gives."""

    rule: FallbackRule
    route: Route


_FALLBACK_ACTION = {
    "block": Route.AUTO_BLOCK,
    "review": Route.ASYNC_REVIEW,
    "allow": Route.AUTO_ALLOW,
}


def fallback_rules(policy: Policy) -> list[RuleRoute]:
    """The policy's fallback rules in deciding order: blocks first, the below-review choice
    last (it applies only when no other rule does)."""
    fb = policy.fallback
    rules = [
        RuleRoute(FallbackRule.BLOCK_AMOUNT, Route.AUTO_BLOCK),
        RuleRoute(FallbackRule.WATCHLIST, Route.AUTO_BLOCK),
    ]
    if fb.flagged_card_days is not None:
        rules.append(RuleRoute(FallbackRule.FLAGGED_CARD, _FALLBACK_ACTION[fb.flagged_card_action]))
    rules.append(RuleRoute(FallbackRule.REVIEW_AMOUNT, Route.ASYNC_REVIEW))
    rules.sort(key=lambda hit: hit.route is not Route.AUTO_BLOCK)  # stable: blocks first
    return [
        *rules,
        RuleRoute(FallbackRule.BELOW_REVIEW, _FALLBACK_ACTION[fb.below_review_amount]),
    ]


def fallback_hits(
    amount: float, terminal_id: str, flagged: bool, policy: Policy
) -> list[RuleRoute]:
    """Every fallback rule that applies, the deciding one first; never empty. `flagged`: the
    card (customer) was flagged within `fallback.flagged_card_days` (`labels.flagged_cards`)."""
    fb = policy.fallback
    applies = {
        FallbackRule.BLOCK_AMOUNT: amount > fb.block_amount_above,
        FallbackRule.WATCHLIST: terminal_id in fb.watchlist_terminals,
        FallbackRule.FLAGGED_CARD: flagged,
        FallbackRule.REVIEW_AMOUNT: amount > fb.review_amount_above,
    }
    rules = fallback_rules(policy)
    return [hit for hit in rules if applies.get(hit.rule)] or rules[-1:]


def fallback_route(amount: float, terminal_id: str, policy: Policy, flagged: bool = False) -> Route:
    """Deterministic rules when the model is unavailable: block or review what any rule marks
    risky; the rest as `fallback.below_review_amount` says, audited with that rule."""
    return fallback_hits(amount, terminal_id, flagged, policy)[0].route


def fallback_condition(rule: FallbackRule, policy: Policy) -> str:
    """A fallback rule in words, as `policy explain` and a decision's reasons show it."""
    fb = policy.fallback
    return {
        FallbackRule.BLOCK_AMOUNT: f"amount > {fb.block_amount_above:,.2f}",
        FallbackRule.WATCHLIST: "terminal on the watch list "
        f"({len(fb.watchlist_terminals)} terminals)",
        FallbackRule.FLAGGED_CARD: f"card flagged in the last {fb.flagged_card_days} days",
        FallbackRule.REVIEW_AMOUNT: f"amount > {fb.review_amount_above:,.2f}",
        FallbackRule.BELOW_REVIEW: f"no other rule (amount ≤ {fb.review_amount_above:,.2f})",
    }[rule]


def recommendation(route_: Route) -> str:
    """The model's recommendation, kept separate from the reviewer's decision."""
    return "approve" if route_ == Route.AUTO_ALLOW else "reject"


def is_high_impact(amount: float, policy: Policy) -> bool:
    return amount > policy.high_impact.amount_above


def queue_priority(
    score: float | None,
    amount: float,
    waiting: timedelta = timedelta(0),
    boost_per_hour: float = 0.0,
    factor: float = 1.0,
) -> float:
    """A review case's place in its queue: expected impact (score x amount; no score, as under
    the fallback rules, counts as certain fraud), grown by whole hours waiting, so queues are
    worked by what is at stake, old cases rise, and a rank changes at most hourly. `factor` is
    the queue's (`Policy.priority_factor`): optional work ranks below mandatory work."""
    hours = max(0, math.floor(waiting.total_seconds() / 3600))
    impact = (1.0 if score is None else score) * amount * (1 + boost_per_hour * hours)
    return round(factor * impact, 4)


@dataclass(frozen=True)
class Interval:
    """A closed, open or half-open range of a score or a confidence."""

    lo: float
    hi: float
    lo_closed: bool = True
    hi_closed: bool = True

    def contains(self, x: float) -> bool:
        above = x >= self.lo if self.lo_closed else x > self.lo
        below = x <= self.hi if self.hi_closed else x < self.hi
        return above and below

    def is_empty(self) -> bool:
        return self.lo > self.hi or (self.lo == self.hi and not (self.lo_closed and self.hi_closed))

    def describe(self, name: str) -> str:
        if self == Interval(0.0, 1.0):
            return "any"
        if self.lo == self.hi:
            return f"{name} = {self.lo:.2f}"
        lower = "" if self.lo == 0 and self.lo_closed else f"{self.lo:.2f} {_le(self.lo_closed)} "
        upper = "" if self.hi == 1 and self.hi_closed else f" {_le(self.hi_closed)} {self.hi:.2f}"
        return f"{lower}{name}{upper}"


@dataclass(frozen=True)
class DecisionRule:
    """One row of the decision table: where it applies, which route, what it means."""

    score: Interval
    confidence: Interval
    route: Route
    why: str

    def matches(self, score: float, confidence: float) -> bool:
        return self.score.contains(score) and self.confidence.contains(confidence)


def decision_table(policy: Policy) -> list[DecisionRule]:
    """The router as a table (what `policy explain` prints); the rows partition [0,1]x[0,1].

    Tests check each row against `route`, so the table cannot drift from the code that decides.
    """
    rules = _fraud_table(policy.fraud) if policy.mode == "fraud" else _generic_table(policy.generic)
    return [r for r in rules if not (r.score.is_empty() or r.confidence.is_empty())]


def _fraud_table(f: FraudRules) -> list[DecisionRule]:
    anything = Interval(0.0, 1.0)
    band = Interval(f.review_from, f.sync_score_from, hi_closed=False)
    return [
        DecisionRule(
            Interval(0.0, f.review_from, hi_closed=False),
            anything,
            Route.AUTO_ALLOW,
            "below the review band",
        ),
        DecisionRule(
            band, Interval(f.low_confidence_below, 1.0), Route.ASYNC_REVIEW, "medium risk"
        ),
        DecisionRule(
            band,
            Interval(0.0, f.low_confidence_below, hi_closed=False),
            Route.SYNC_REVIEW,
            "medium risk, low confidence",
        ),
        DecisionRule(
            Interval(f.sync_score_from, f.block_above),
            anything,
            Route.SYNC_REVIEW,
            "high risk: merchant hold",
        ),
        DecisionRule(
            Interval(f.block_above, 1.0, lo_closed=False),
            anything,
            Route.AUTO_BLOCK,
            "above the review band",
        ),
    ]


def _generic_table(g: GenericRules) -> list[DecisionRule]:
    below_sync = Interval(0.0, g.sync_risk_from, hi_closed=False)
    confident = Interval(g.async_confidence_below, 1.0)
    return [
        DecisionRule(
            Interval(g.sync_risk_from, 1.0), Interval(0.0, 1.0), Route.SYNC_REVIEW, "high risk"
        ),
        DecisionRule(
            below_sync,
            Interval(0.0, g.sync_confidence_below, hi_closed=False),
            Route.SYNC_REVIEW,
            "low confidence",
        ),
        DecisionRule(
            below_sync,
            Interval(g.sync_confidence_below, g.async_confidence_below, hi_closed=False),
            Route.ASYNC_REVIEW,
            "medium confidence",
        ),
        DecisionRule(
            Interval(g.async_risk_above, g.sync_risk_from, False, False),
            confident,
            Route.ASYNC_REVIEW,
            "medium risk",
        ),
        DecisionRule(
            Interval(0.0, g.async_risk_above), confident, Route.AUTO_ALLOW, "low risk, confident"
        ),
    ]


def _le(closed: bool) -> str:
    return "≤" if closed else "<"
