"""A review case's state in the store: its SLA, where it moves, what it shows the next reviewer."""

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.policy import POST_VERIFY_QUEUE, SIGNOFF_QUEUE, TIER2_QUEUE, Policy, SimilarWeights
from fraudloop.redaction import find_sensitive
from fraudloop.storage import AuditEvent, Decision, ReviewTask, insert_ignore
from labeling.review.similar import similar_cases

OPEN = ("pending", "delivered")  # a reviewer can still answer
NOTE_EVENT = "human_annotate"
SWEEP_ACTOR = "sla_sweep"  # the actor of what the SLA sweep does (escalations, pages)
SENIOR_ROLES = ("senior", "admin")
ROLES = ("reviewer", *SENIOR_ROLES)


class Exit(StrEnum):
    """Why a case left its queue (`ReviewTask.exit_code`): paging reads it, never the text."""

    SLA_BREACH = "sla_breach"
    REVIEWER_ESCALATION = "reviewer_escalation"
    SIGNOFF_DISAGREEMENT = "signoff_disagreement"
    TIER3 = "tier3"


def tier(task: ReviewTask, policy: Policy) -> int:
    queue = policy.queues.get(task.queue)
    return queue.tier if queue else 1


def sla_metadata(task: ReviewTask, policy: Policy, now: datetime) -> dict[str, Any]:
    """Expected and actual response time of a case, for every audit event about it."""
    expected = (task.sla_due_at - task.created_at).total_seconds() / 60
    actual = (now - task.created_at).total_seconds() / 60
    return {
        "expected_minutes": round(expected, 2),
        "actual_minutes": round(actual, 2),
        "queue": task.queue,
        "tier": tier(task, policy),
        "due_at": task.sla_due_at.isoformat(),
        "met": actual <= expected,
    }


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


def escalate(
    session: Session,
    task: ReviewTask,
    code: Exit,
    reason: str,
    actor: str,
    policy: Policy,
    now: datetime,
) -> bool:
    """Close a Tier 1 case and open it in Tier 2; False if it was escalated before."""
    if not close(session, task, code, reason, actor, f"escalated:{task.case_id}", policy, now):
        return False
    open_case(session, task, TIER2_QUEUE, policy, now)
    return True


def close(
    session: Session,
    task: ReviewTask,
    code: Exit,
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
        reason=code.value,
        to="tier3" if code is Exit.TIER3 else TIER2_QUEUE,
    )
    if audit.append(session, [event]) == 0:
        return False
    task.status = "escalated"
    task.exit_code = code.value
    task.status_reason = f"{code.value}: {reason}"
    task.reviewed_at = now
    if task.ls_task_id is not None:
        patch(task, data={"closed": scrub(f"{code.value}: {reason}")})
    return True


# what an audited automatic decision did, as the post-verify notice says it
AUDITED = {"auto_approve": "approved", "auto_reject": "blocked"}


def notice(session: Session, task: ReviewTask) -> str:
    """What the reviewer of a follow-up or audit case must know: why it is here."""
    if task.queue == POST_VERIFY_QUEUE:
        decided = AUDITED.get(task.strategy or "", "decided")
        return (
            f"Post-verify audit, already {decided} automatically: your answer is a label that "
            f"measures how often automatic decisions are wrong, and changes no decision. "
            f"Why this case: {task.selection_reason}"
        )
    if task.queue == SIGNOFF_QUEUE:
        return (
            "Second sign-off of a high-impact case: decide on your own; the reviewer who made "
            "the first decision cannot sign again."
        )
    parent = session.get(ReviewTask, task.parent_case_id or "")
    if task.queue == TIER2_QUEUE and parent is not None:
        return scrub(f"Escalated to Tier 2 ({parent.status_reason})")
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
    return scrub("\n".join(lines))


def review_cases(
    session: Session,
    tasks: list[ReviewTask],
    similar_k: int = 0,
    similar_pool: int = 1,
    similar_weights: SimilarWeights | None = None,
) -> list[dict[str, Any]]:
    """What Label Studio needs for each task: redacted snapshot, score, reasons, SLA, priority,
    why it is here and (with `similar_k`) the most similar cases people already decided
    (`similar.similar_cases`)."""
    ids = [t.transaction_id for t in tasks]
    rows = {
        d.transaction_id: d
        for d in session.scalars(select(Decision).where(Decision.transaction_id.in_(ids)))
    }
    similar = similar_cases(session, list(rows.values()), similar_k, similar_pool, similar_weights)
    return [
        {
            "case_id": t.case_id,
            "transaction_id": t.transaction_id,
            "queue": t.queue,
            "snapshot": rows[t.transaction_id].input_snapshot,
            "score": rows[t.transaction_id].score or 0.0,
            "recommendation": rows[t.transaction_id].recommendation,
            "reasons": rows[t.transaction_id].reasons,
            "model_version": rows[t.transaction_id].model_version or "fallback",
            "sla_due_at": t.sla_due_at,
            "priority": t.priority,
            "similar": similar.get(t.transaction_id, []),
            "notice": notice(session, t),
            # why active learning chose it (an audit case says so in its notice instead)
            "selection_reason": "" if t.queue == POST_VERIFY_QUEUE else t.selection_reason or "",
        }
        for t in tasks
    ]


def scrub(text: str) -> str:
    """Reviewer-visible text built from free text: anything that looks like PII is masked.

    Status reasons carry rationales, and a reviewer may paste a card number or e-mail into one.
    """
    for found in find_sensitive(text):
        text = text.replace(found, "[redacted]")
    return text


def patch(
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
