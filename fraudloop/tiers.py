"""Review tiers on the store: when a reviewer's answer is final, and where a case goes when not.

Tier 1 (the sync and async queues) decides ordinary cases. A high-impact decision needs a second
sign-off by a *different* reviewer in its own queue; until both agree the final decision stays
pending, and disagreement goes to Tier 2. An `escalate` answer or a missed SLA also moves a case
to Tier 2 (senior analysts). Tier 3 (incident response, compliance) is paged, never queued.
An `annotate` answer decides nothing: its note is audited and shown to the next reviewer.
Only registered reviewers (`fraudloop reviewers add`) count, whatever Label Studio accepted.

Label Studio is not touched here: a case that leaves its queue or goes back to it gets an
`ls_patch` that `labeling.escalation.push_patches` mirrors to the server, so the store stays the
one place that decides, whichever path (webhook or reconciliation) brought the answer in.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit, decisions
from fraudloop.policy import SIGNOFF_QUEUE, TIER2_QUEUE, Policy, is_high_impact
from fraudloop.redaction import find_sensitive
from fraudloop.storage import AuditEvent, Decision, Reviewer, ReviewTask, insert_ignore

OPEN = ("pending", "delivered")  # a reviewer can still answer
FINAL = ("human_approve", "human_reject")
SWEEP_ACTOR = "sla_sweep"
NOTE_EVENT = "human_annotate"
SENIOR_ROLES = ("senior", "admin")
ROLES = ("reviewer", *SENIOR_ROLES)


class Answer(BaseModel):
    """One annotation as fraudloop sees it: an audit decision, or the problem that voids it."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    annotation_id: int
    updated_at: str  # the server's stamp: with the annotation id, what makes an answer unique
    reviewer: str
    # human_approve | human_reject | escalated | request_info | annotate
    decision: str | None = None
    rationale: str | None = None
    problem: str | None = None

    def key(self, kind: str) -> str:
        return f"{kind}:{self.case_id}:{self.annotation_id}:{self.updated_at}"


class Page(BaseModel):
    """A Tier 3 page: an incident by the policy's definition, sent through the alert sink."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    transaction_id: str
    reason: str
    amount: float
    sla_minutes: float
    overdue_minutes: float


@dataclass
class SweepResult:
    escalated: list[str] = field(default_factory=list)
    reprioritized: int = 0
    pages: list[Page] = field(default_factory=list)


# answer kinds that leave an audit event keyed by the annotation (see Answer.key)
_KINDS = ("review", "answer", "invalid")


def receive(session: Session, answer: Answer, policy: Policy, now: datetime) -> str:
    """Apply one answer, once; returns what happened to it.

    applied | awaiting_signoff | escalated | returned | annotated | invalid | late |
    already_seen | unknown
    """
    task = session.get(ReviewTask, answer.case_id)
    decision = session.get(Decision, task.transaction_id) if task else None
    if task is None or decision is None:
        return "unknown"  # not ours (another deployment, or a deleted store)
    if _seen(session, answer):
        return "already_seen"
    if task.status not in OPEN:
        if task.annotation_id == answer.annotation_id:
            return "already_seen"  # the answer that closed the case, delivered again
        _event(session, task, answer, "late_annotation", now, status=task.status)
        return "late"
    problem = answer.problem or _rule_problem(session, task, answer)
    if problem is not None:
        _return_to_queue(session, task, answer, problem, "invalid_annotation", now)
        return "invalid"
    return _act(session, task, decision, answer, policy, now)


def _act(
    session: Session,
    task: ReviewTask,
    decision: Decision,
    answer: Answer,
    policy: Policy,
    now: datetime,
) -> str:
    """A valid answer on an open case: return, escalate, hold for sign-off, or decide."""
    if answer.decision == "request_info":
        note = f"more information requested: {answer.rationale}"
        _return_to_queue(session, task, answer, note, "request_info", now)
        return "returned"
    if answer.decision == "annotate":
        _annotate(session, task, answer, now)
        return "annotated"
    if answer.decision == "escalated":
        reason = f"escalated by a Tier {_tier(task, policy)} reviewer: {answer.rationale}"
        if _tier(task, policy) == 2:
            key = answer.key("answer")
            _close(session, task, "tier3", reason, answer.reviewer, key, policy, now)
        else:
            escalate(session, task, "reviewer_escalation", reason, answer.reviewer, policy, now)
        task.decision, task.reviewer, task.annotation_id = (
            "escalated",
            answer.reviewer,
            answer.annotation_id,
        )
        return "escalated"
    if task.queue == SIGNOFF_QUEUE:
        first = session.get(ReviewTask, task.parent_case_id or "")
        if first is not None and first.decision != answer.decision:
            _record_answer(session, task, answer, "signoff_disagreement", policy, now)
            reason = (
                f"second sign-off disagrees: the first reviewer chose {first.decision}, "
                f"the second {answer.decision}"
            )
            escalate(session, task, "signoff_disagreement", reason, answer.reviewer, policy, now)
            return "escalated"
    elif _tier(task, policy) == 1 and is_high_impact(decision.amount, policy):
        _record_answer(session, task, answer, "first_signoff", policy, now)
        open_case(session, task, SIGNOFF_QUEUE, policy, now)
        return "awaiting_signoff"
    _finalize(session, task, answer, now)
    return "applied"


def escalate(
    session: Session,
    task: ReviewTask,
    code: str,
    reason: str,
    actor: str,
    policy: Policy,
    now: datetime,
) -> bool:
    """Close a Tier 1 case and open it in Tier 2; False if it was escalated before."""
    if not _close(session, task, code, reason, actor, f"escalated:{task.case_id}", policy, now):
        return False
    open_case(session, task, TIER2_QUEUE, policy, now)
    return True


def open_case(
    session: Session, origin: ReviewTask, queue: str, policy: Policy, now: datetime
) -> str:
    """The same transaction as a new case in another queue (once: the case id is the key).

    Reviewers' notes come along: Label Studio gets them once the case is delivered there.
    """
    case_id = f"{origin.transaction_id}:{queue}"
    row: dict[str, Any] = {
        "case_id": case_id,
        "transaction_id": origin.transaction_id,
        "queue": queue,
        "priority": origin.priority,
        "created_at": now,
        "sla_due_at": now + timedelta(minutes=policy.queue_sla(queue)),
        "status": "pending",
        "attempts": 0,
        "parent_case_id": origin.case_id,
    }
    notes = reviewer_notes(session, origin.transaction_id)
    if notes:
        row["ls_patch"] = {"data": {"reviewer_notes": notes}, "delete_annotations": []}
    insert_ignore(session, ReviewTask, [row])
    return case_id


def sweep(session: Session, policy: Policy, now: datetime) -> SweepResult:
    """Escalate Tier 1 cases past their SLA, age priorities, and list the pages now due."""
    result = SweepResult()
    tier1 = [q for q, cfg in policy.queues.items() if cfg.tier == 1]
    overdue = session.scalars(
        select(ReviewTask)
        .where(ReviewTask.status.in_(OPEN), ReviewTask.queue.in_(tier1))
        .where(ReviewTask.sla_due_at < now)
        .order_by(ReviewTask.sla_due_at)
    )
    for task in list(overdue):
        late = (now - task.sla_due_at).total_seconds() / 60
        reason = f"no decision within the {task.queue} SLA ({late:.0f} min overdue)"
        if escalate(session, task, "sla_breach", reason, SWEEP_ACTOR, policy, now):
            result.escalated.append(task.case_id)
    result.reprioritized = refresh_priorities(session, policy, now)
    result.pages = pages_due(session, policy, now)
    return result


def aged_priority(impact: float, waiting: timedelta, boost_per_hour: float) -> float:
    """Expected impact grown by whole hours waiting: old cases rise, and change at most hourly."""
    hours = max(0, math.floor(waiting.total_seconds() / 3600))
    return round(impact * (1 + boost_per_hour * hours), 4)


def refresh_priorities(session: Session, policy: Policy, now: datetime) -> int:
    """Bring open cases' priority up to date; Label Studio is told through `ls_patch`."""
    rows = session.execute(
        select(ReviewTask, Decision.score, Decision.amount, Decision.decided_at)
        .join(Decision, Decision.transaction_id == ReviewTask.transaction_id)
        .where(ReviewTask.status.in_(OPEN))
    )
    changed = 0
    for task, score, amount, decided_at in rows:
        impact = (score if score is not None else 1.0) * amount
        value = aged_priority(impact, now - decided_at, policy.escalation.age_boost_per_hour)
        if abs(value - task.priority) < 1e-6:
            continue
        task.priority = value
        if task.status == "delivered":
            _patch(task, data={"priority": value})
        changed += 1
    return changed


def pages_due(session: Session, policy: Policy, now: datetime) -> list[Page]:
    """Incidents (policy `escalation`) not paged yet: paging is at least once, never lost."""
    rows = session.execute(
        select(ReviewTask, Decision.amount)
        .join(Decision, Decision.transaction_id == ReviewTask.transaction_id)
        .where(
            ((ReviewTask.queue == TIER2_QUEUE) & ReviewTask.status.in_(OPEN))
            | ReviewTask.status_reason.like("tier3:%")
            | ReviewTask.status_reason.like("sla_breach:%")
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
            )
        )
    if not candidates:
        return []
    paged = set(
        session.scalars(
            select(AuditEvent.idempotency_key).where(
                AuditEvent.idempotency_key.in_([f"page:{p.case_id}" for p in candidates])
            )
        )
    )
    return [p for p in candidates if f"page:{p.case_id}" not in paged]


def record_page(session: Session, page: Page, sink: str, now: datetime) -> bool:
    """Audit a page once it has gone out through `sink`; False if it was recorded before."""
    event = audit.event(
        f"page:{page.case_id}",
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


def sla_metadata(task: ReviewTask, policy: Policy, now: datetime) -> dict[str, Any]:
    """Expected and actual response time of a case, for its audit events."""
    expected = (task.sla_due_at - task.created_at).total_seconds() / 60
    actual = (now - task.created_at).total_seconds() / 60
    return {
        "expected_minutes": round(expected, 2),
        "actual_minutes": round(actual, 2),
        "queue": task.queue,
        "tier": _tier(task, policy),
        "due_at": task.sla_due_at.isoformat(),
        "met": actual <= expected,
    }


def notice(session: Session, task: ReviewTask) -> str:
    """What the reviewer of a follow-up case must know: why it is here."""
    if task.queue == SIGNOFF_QUEUE:
        return (
            "Second sign-off of a high-impact case: decide on your own; the reviewer who made "
            "the first decision cannot sign again."
        )
    parent = session.get(ReviewTask, task.parent_case_id or "")
    if task.queue == TIER2_QUEUE and parent is not None:
        return _scrub(f"Escalated to Tier 2 ({parent.status_reason})")
    return ""


def reviewer_notes(session: Session, transaction_id: str) -> str:
    """Every `annotate` note on a transaction, oldest first, as the next reviewer reads them.

    The audit trail is their only store. Authors are named by the part of their e-mail before
    the @: Label Studio must receive nothing that looks like PII.
    """
    rows = session.execute(
        select(AuditEvent.timestamp, AuditEvent.actor, AuditEvent.review_rationale)
        .where(AuditEvent.transaction_id == transaction_id, AuditEvent.event_type == NOTE_EVENT)
        .order_by(AuditEvent.seq)
    ).tuples()
    lines = [f"{at:%Y-%m-%d %H:%M} UTC, {who.split('@')[0]}: {text}" for at, who, text in rows]
    return _scrub("\n".join(lines))


def roles(session: Session) -> dict[str, str]:
    return dict(session.execute(select(Reviewer.email, Reviewer.role)).tuples())


def _incident(task: ReviewTask, amount: float, policy: Policy, now: datetime) -> str | None:
    rules = policy.escalation
    reason = task.status_reason or ""
    if reason.startswith("tier3:") and rules.page_on_senior_escalation:
        return f"senior escalation of {task.case_id}: {reason.removeprefix('tier3: ')}"
    if reason.startswith("sla_breach:") and amount > rules.incident_amount_above:
        return f"{task.case_id} ({amount:,.2f}) breached its SLA: {reason}"
    if task.queue == TIER2_QUEUE and task.status in OPEN and task.sla_due_at < now:
        if rules.page_on_tier2_breach:
            return f"Tier 2 case {task.case_id} is past its SLA with no senior decision"
    return None


def _rule_problem(session: Session, task: ReviewTask, answer: Answer) -> str | None:
    """Rules Label Studio cannot enforce: only registered reviewers count (the server's admin
    or any user created outside `fraudloop reviewers add` does not), distinct sign-off
    reviewers, seniors for Tier 2."""
    reviewer = session.get(Reviewer, answer.reviewer)
    if reviewer is None:
        return (
            f"{answer.reviewer} is not a fraudloop reviewer; an admin can register them with "
            "`fraudloop reviewers add`"
        )
    if task.queue == SIGNOFF_QUEUE:
        first = session.get(ReviewTask, task.parent_case_id or "")
        if first is not None and first.reviewer == answer.reviewer:
            return "the second sign-off must come from another reviewer than the first one"
    if task.queue == TIER2_QUEUE and reviewer.role not in SENIOR_ROLES:
        return f"Tier 2 decisions need a senior reviewer; {answer.reviewer} is a {reviewer.role}"
    return None


def _tier(task: ReviewTask, policy: Policy) -> int:
    queue = policy.queues.get(task.queue)
    return queue.tier if queue else 1


def _seen(session: Session, answer: Answer) -> bool:
    keys = [answer.key(kind) for kind in _KINDS]
    return (
        session.scalar(select(AuditEvent.seq).where(AuditEvent.idempotency_key.in_(keys)).limit(1))
        is not None
    )


def _event(
    session: Session,
    task: ReviewTask,
    answer: Answer,
    event_type: str,
    now: datetime,
    **details: Any,
) -> int:
    event = audit.event(
        answer.key("answer"),
        event_type,
        answer.reviewer,
        now,
        transaction_id=task.transaction_id,
        decision=answer.decision,
        review_rationale=answer.rationale,
        case_id=task.case_id,
        annotation_id=answer.annotation_id,
        **details,
    )
    return audit.append(session, [event])


def _record_answer(
    session: Session,
    task: ReviewTask,
    answer: Answer,
    event_type: str,
    policy: Policy,
    now: datetime,
) -> None:
    """A decision that is not (yet) final: kept on the case, audited with its SLA."""
    _event(session, task, answer, event_type, now, sla_metadata=sla_metadata(task, policy, now))
    _decided(task, answer, now)


def _finalize(session: Session, task: ReviewTask, answer: Answer, now: datetime) -> None:
    decisions.apply_review(
        session,
        {
            "case_id": task.case_id,
            "annotation_id": answer.annotation_id,
            "updated_at": answer.updated_at,
            "decision": answer.decision,
            "reviewer": answer.reviewer,
            "rationale": answer.rationale,
        },
        now,
    )
    _decided(task, answer, now)


def _decided(task: ReviewTask, answer: Answer, now: datetime) -> None:
    task.status = "reviewed"
    task.decision = answer.decision
    task.reviewer = answer.reviewer
    task.reviewed_at = now
    task.annotation_id = answer.annotation_id


def _return_to_queue(
    session: Session,
    task: ReviewTask,
    answer: Answer,
    reason: str,
    event_type: str,
    now: datetime,
) -> None:
    """The answer does not count: audit it, drop it in Label Studio, show the next one why."""
    _keep_open(session, task, answer, event_type, now, problem=reason)
    task.status_reason = reason
    _patch(task, data={"notice": _scrub(f"Returned: {reason}")})


def _annotate(session: Session, task: ReviewTask, answer: Answer, now: datetime) -> None:
    """A note for whoever works the case next: it stays open, its SLA clock running."""
    _keep_open(session, task, answer, NOTE_EVENT, now)
    _patch(task, data={"reviewer_notes": reviewer_notes(session, task.transaction_id)})


def _keep_open(
    session: Session,
    task: ReviewTask,
    answer: Answer,
    event_type: str,
    now: datetime,
    **details: Any,
) -> None:
    """Audit an answer that leaves the case open, and delete it in Label Studio, which would
    otherwise count the task as done and take it out of the labeling stream."""
    _event(session, task, answer, event_type, now, **details)
    _patch(task, delete_annotations=[answer.annotation_id])


def _close(
    session: Session,
    task: ReviewTask,
    code: str,
    reason: str,
    actor: str,
    key: str,
    policy: Policy,
    now: datetime,
) -> bool:
    """Take a case out of its queue (status `escalated`), audited with its SLA, once."""
    event = audit.event(
        key,
        "escalated",
        actor,
        now,
        transaction_id=task.transaction_id,
        decision="escalated",
        review_rationale=reason,
        sla_metadata=sla_metadata(task, policy, now),
        case_id=task.case_id,
        reason=code,
        to="tier3" if code == "tier3" else TIER2_QUEUE,
    )
    if audit.append(session, [event]) == 0:
        return False
    task.status = "escalated"
    task.status_reason = f"{code}: {reason}"
    task.reviewed_at = now
    if task.ls_task_id is not None:
        _patch(task, data={"closed": _scrub(f"{code}: {reason}")})
    return True


def _scrub(text: str) -> str:
    """Reviewer-visible text built from free text: anything that looks like PII is masked.

    Status reasons carry rationales, and a reviewer may paste a card number or e-mail into one.
    """
    for found in find_sensitive(text):
        text = text.replace(found, "[redacted]")
    return text


def _patch(
    task: ReviewTask,
    data: dict[str, Any] | None = None,
    delete_annotations: list[int] | None = None,
) -> None:
    """Merge a change into what Label Studio still has to be told about this case."""
    current = dict(task.ls_patch or {})
    current["data"] = {**current.get("data", {}), **(data or {})}
    current["delete_annotations"] = sorted(
        {*current.get("delete_annotations", []), *(delete_annotations or [])}
    )
    task.ls_patch = current
