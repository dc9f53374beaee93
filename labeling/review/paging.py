"""Tier 3 pages: incidents by the policy's definition, sent through an alert sink, then audited.

A page is recorded only after the sink took it, so a sink outage means the next sweep pages
again (at least once), never that an incident goes unpaged.
"""

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.alerts import Alert, AlertSink, LogSink, WebhookSink
from fraudloop.errors import ServiceUnavailable
from fraudloop.policy import TIER2_QUEUE, Policy
from fraudloop.storage import AuditEvent, Decision, ReviewTask
from labeling.review.cases import OPEN, SWEEP_ACTOR, Exit

TIER3 = 3  # the tier a page reaches (`escalation.matrix`)


class Page(BaseModel):
    """A Tier 3 page: an incident by the policy's definition, sent through the alert sink."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    transaction_id: str
    reason: str
    amount: float
    sla_minutes: float
    overdue_minutes: float
    contacts: list[str] = []  # Tier 3's row of the policy's escalation matrix


def pages_due(session: Session, policy: Policy, now: datetime) -> list[Page]:
    """Incidents (policy `escalation`) not paged yet: paging is at least once, never lost."""
    rows = session.execute(
        select(ReviewTask, Decision.amount)
        .join(Decision, Decision.transaction_id == ReviewTask.transaction_id)
        .where(
            ((ReviewTask.queue == TIER2_QUEUE) & ReviewTask.status.in_(OPEN))
            | ReviewTask.exit_code.in_([Exit.TIER3.value, Exit.SLA_BREACH.value])
        )
    )
    candidates: list[Page] = []
    for task, amount in rows:
        reason = _incident(task, amount, policy, now)
        if reason is None:
            continue
        sla = (task.sla_due_at - task.created_at).total_seconds() / 60
        candidates.append(
            Page(
                case_id=task.case_id,
                transaction_id=task.transaction_id,
                reason=reason,
                amount=amount,
                sla_minutes=round(sla, 2),
                overdue_minutes=round((now - task.sla_due_at).total_seconds() / 60, 2),
                contacts=list(policy.escalation.matrix[TIER3].contacts),
            )
        )
    if not candidates:
        return []
    paged = set(
        session.scalars(
            select(AuditEvent.idempotency_key).where(
                AuditEvent.idempotency_key.in_([_key(p) for p in candidates])
            )
        )
    )
    return [p for p in candidates if _key(p) not in paged]


def send_pages(session: Session, pages: list[Page], sink: AlertSink, now: datetime) -> int:
    """Send each page and audit it; stops at the first sink failure (the rest page next time)."""
    sent = 0
    for page in pages:
        try:
            sink.send(page_alert(page, now))
        except ServiceUnavailable:
            break
        record_page(session, page, type(sink).__name__, now)
        sent += 1
    return sent


def page_alert(page: Page, now: datetime) -> Alert:
    return Alert(
        rule="tier3_page",
        scope=page.case_id,
        value=page.overdue_minutes,
        threshold=page.sla_minutes,
        window_minutes=None,
        at=now,
        message=f"Tier 3 page: {page.reason}",
        tier=TIER3,
        contacts=page.contacts,
    )


def page_sink(policy: Policy) -> AlertSink:
    """Where Tier 3 pages go: the policy's `escalation.page_target` (the log, or a pager's
    webhook)."""
    target = policy.escalation.page_target
    return LogSink() if target == "log" else WebhookSink(target)


def record_page(session: Session, page: Page, sink: str, now: datetime) -> bool:
    """Audit a page once it has gone out through `sink`; False if it was recorded before."""
    event = audit.event(
        _key(page),
        "tier3_page",
        SWEEP_ACTOR,
        now,
        transaction_id=page.transaction_id,
        decision="escalated",
        sla_metadata={
            "expected_minutes": page.sla_minutes,
            "actual_minutes": round(page.sla_minutes + page.overdue_minutes, 2),
            "met": page.overdue_minutes <= 0,
            "tier": 3,
        },
        reason=page.reason,
        sink=sink,
        case_id=page.case_id,
    )
    return audit.append(session, [event]) == 1


def _key(page: Page) -> str:
    return f"page:{page.case_id}"


def _incident(task: ReviewTask, amount: float, policy: Policy, now: datetime) -> str | None:
    rules = policy.escalation
    reason = task.status_reason or ""
    if task.exit_code == Exit.TIER3 and rules.page_on_senior_escalation:
        return f"senior escalation of {task.case_id}: {reason.removeprefix('tier3: ')}"
    if task.exit_code == Exit.SLA_BREACH and amount > rules.incident_amount_above:
        return f"{task.case_id} ({amount:,.2f}) breached its SLA: {reason}"
    if task.queue == TIER2_QUEUE and task.status in OPEN and task.sla_due_at < now:
        if rules.page_on_tier2_breach:
            return f"Tier 2 case {task.case_id} is past its SLA with no senior decision"
    return None
