"""The versioned decision policy (YAML -> pydantic) and the router that applies it."""

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fraudloop.errors import FraudloopError


class Route(StrEnum):
    AUTO_ALLOW = "auto_allow"
    AUTO_BLOCK = "auto_block"
    SYNC_REVIEW = "sync_review"
    ASYNC_REVIEW = "async_review"


REVIEW_ROUTES = (Route.SYNC_REVIEW, Route.ASYNC_REVIEW)


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


class HighImpact(_Strict):
    amount_above: float = Field(ge=0)


class Sla(_Strict):
    sync_review: int = Field(gt=0)
    async_review: int = Field(gt=0)
    tier2: int = Field(gt=0)


class Fallback(_Strict):
    block_amount_above: float = Field(ge=0)
    review_amount_above: float = Field(ge=0)
    watchlist_terminals: list[str] = []


class Review(_Strict):
    micro_batch: int = Field(gt=0)
    daily_budget: int = Field(ge=0)


class Learning(_Strict):
    chargeback_delay_days: int = Field(ge=0)
    train_window_days: int = Field(gt=0)
    promotion_metric: str
    promotion_min_gain: float
    holdout_days: int = Field(gt=0)


class Monitoring(_Strict):
    current_days: int = Field(gt=0)
    reference_days: int = Field(gt=0)


class Alerts(_Strict):
    override_rate_max: float = Field(ge=0, le=1)
    override_window_minutes: int = Field(gt=0)
    latency_sla_factor_max: float = Field(gt=0)
    latency_window_minutes: int = Field(gt=0)
    confidence_drop_max: float = Field(ge=0, le=1)


class Policy(_Strict):
    version: str
    mode: str = Field(pattern="^(fraud|generic)$")
    fraud: FraudRules
    generic: GenericRules
    high_impact: HighImpact
    sla_minutes: Sla
    fallback: Fallback
    review: Review
    learning: Learning
    monitoring: Monitoring
    alerts: Alerts

    def sla_for(self, route: Route) -> int | None:
        """SLA in minutes for a review route, None for automatic routes."""
        if route == Route.SYNC_REVIEW:
            return self.sla_minutes.sync_review
        if route == Route.ASYNC_REVIEW:
            return self.sla_minutes.async_review
        return None


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; errors name the field and the problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise FraudloopError(f"policy file {path} not found") from exc
    except yaml.YAMLError as exc:
        raise FraudloopError(f"policy file {path} is not valid YAML: {exc}") from exc
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise FraudloopError(f"policy file {path} is invalid: {problems}") from exc


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


def _route_generic(risk: float, confidence: float, rules: GenericRules) -> Route:
    if risk >= rules.sync_risk_from or confidence < rules.sync_confidence_below:
        return Route.SYNC_REVIEW
    if confidence < rules.async_confidence_below or risk > rules.async_risk_above:
        return Route.ASYNC_REVIEW
    return Route.AUTO_ALLOW


def fallback_route(amount: float, terminal_id: str, policy: Policy) -> Route:
    """Deterministic rules when the model is unavailable: block or review, never a silent allow."""
    rules = policy.fallback
    if amount > rules.block_amount_above or terminal_id in rules.watchlist_terminals:
        return Route.AUTO_BLOCK
    if amount > rules.review_amount_above:
        return Route.ASYNC_REVIEW
    return Route.AUTO_ALLOW


def recommendation(route_: Route) -> str:
    """The model's recommendation, kept separate from the reviewer's decision."""
    return "approve" if route_ == Route.AUTO_ALLOW else "reject"


def is_high_impact(amount: float, policy: Policy) -> bool:
    return amount > policy.high_impact.amount_above
