"""Promotion: compare challenger and champion on one holdout, move the alias, audit what happened.

The registry (`models.registry.promote_if_better`) moves aliases; this adds what a promotion
means to the system: a metric that could not be computed (a holdout without frauds gives NaN)
never wins, and the outcome, promoted or not, is an audit event written by the same call.
"""

import math
from datetime import datetime

from sqlalchemy.orm import Session

from fraudloop import audit
from models.registry import PromotionResult, promote_if_better

ACTOR = "retrain-flow"


def comparable(challenger: float, champion: float | None) -> tuple[float, float | None]:
    """Metrics as the comparison takes them: with a NaN on either side there is nothing to
    judge on, so a champion stays (both -inf); without a champion any challenger is promoted."""
    if champion is None:
        return (-math.inf if math.isnan(challenger) else challenger), None
    if math.isnan(challenger) or math.isnan(champion):
        return -math.inf, -math.inf
    return challenger, champion


def promote(
    session: Session,
    name: str,
    version: int,
    metric: str,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    min_gain: float,
    tracking_uri: str,
    now: datetime,
) -> PromotionResult:
    """Move `champion` to `version` only if it wins on `metric`; the audit event is written in
    `session` whatever the outcome (`promotion` or `promotion_rejected`)."""
    mine, theirs = comparable(
        challenger.get(metric, math.nan), champion.get(metric) if champion else None
    )
    result = promote_if_better(name, version, mine, theirs, min_gain, tracking_uri=tracking_uri)
    event = audit.event(
        f"promotion:{name}:{version}",
        "promotion" if result.promoted else "promotion_rejected",
        ACTOR,
        now,
        model_version=str(version),
        reason=result.reason,
        champion_version=result.champion_version,
        previous_champion=result.previous_champion,
        metric=metric,
    )
    audit.append(session, [event])
    return result
