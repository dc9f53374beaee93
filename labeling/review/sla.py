"""The SLA sweep: overdue Tier 1 cases to Tier 2, priorities aged, pages listed."""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop.policy import Policy, queue_priority
from fraudloop.storage import Decision, ReviewTask
from labeling.review.cases import OPEN, SWEEP_ACTOR, Exit, escalate, patch
from labeling.review.paging import Page, pages_due


@dataclass
class SweepResult:
    escalated: list[str] = field(default_factory=list)
    reprioritized: int = 0
    pages: list[Page] = field(default_factory=list)


def sweep(session: Session, policy: Policy, now: datetime) -> SweepResult:
    """Escalate Tier 1 cases past their SLA, age priorities, and list the pages now due."""
    result = SweepResult()
    # a queue may opt out (`escalate_on_breach`): an overdue label request is no incident
    tier1 = [q for q, cfg in policy.queues.items() if cfg.tier == 1 and cfg.escalate_on_breach]
    overdue = session.scalars(
        select(ReviewTask)
        .where(ReviewTask.status.in_(OPEN), ReviewTask.queue.in_(tier1))
        .where(ReviewTask.sla_due_at < now)
        .order_by(ReviewTask.sla_due_at)
    )
    for task in list(overdue):
        late = (now - task.sla_due_at).total_seconds() / 60
        reason = f"no decision within the {task.queue} SLA ({late:.0f} min overdue)"
        if escalate(session, task, Exit.SLA_BREACH, reason, SWEEP_ACTOR, policy, now):
            result.escalated.append(task.case_id)
    result.reprioritized = refresh_priorities(session, policy, now)
    result.pages = pages_due(session, policy, now)
    return result


def refresh_priorities(session: Session, policy: Policy, now: datetime) -> int:
    """Bring open cases' priority up to date; Label Studio is told through `ls_patch`."""
    rows = session.execute(
        select(ReviewTask, Decision.score, Decision.amount, Decision.decided_at)
        .join(Decision, Decision.transaction_id == ReviewTask.transaction_id)
        .where(ReviewTask.status.in_(OPEN))
    )
    changed = 0
    for task, score, amount, decided_at in rows:
        value = queue_priority(
            score,
            amount,
            now - decided_at,
            policy.escalation.age_boost_per_hour,
            policy.priority_factor(task.queue),
        )
        if abs(value - task.priority) < 1e-6:  # noqa: PLR2004 - equal within float rounding
            continue
        task.priority = value
        if task.status == "delivered":
            patch(task, data={"priority": value})
        changed += 1
    return changed
