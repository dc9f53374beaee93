"""One reviewer answer in, applied once: decide, hold for a second sign-off, escalate or return.

An answer on a label-only case (`LABEL_ONLY_QUEUES`: an active-learning pick or a post-verify
audit case, or the Tier 2 case it was escalated to) is a label, never a decision: the
transaction keeps its automatic final decision, the label (source `active_learning`,
`exploration` for a random pick, `post_verify` for the weekly audit sample) enters the features
at once, and the case closes. Disagreeing with the model there needs a rationale as anywhere
(`labeling.label_config.validate_annotation`, one rule for every queue): "the automatic
decision was wrong" is the finding the exploration estimate counts and the QA meeting reads.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import update
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.decisions import HUMAN_DECISIONS
from fraudloop.labels import add_labels
from fraudloop.policy import (
    ACTIVE_LEARNING_QUEUE,
    EXPLORATION,
    LABEL_ONLY_QUEUES,
    POST_VERIFY_QUEUE,
    SIGNOFF_QUEUE,
    TIER2_QUEUE,
    Policy,
    is_high_impact,
)
from fraudloop.storage import Decision, Reviewer, ReviewTask
from labeling.review.cases import (
    NOTE_EVENT,
    OPEN,
    SENIOR_ROLES,
    Exit,
    close,
    escalate,
    open_case,
    patch,
    reviewer_notes,
    scrub,
    sla_metadata,
    tier,
)


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


# answer kinds that leave an audit event keyed by the annotation (see Answer.key)
_KINDS = ("review", "answer", "invalid")
LABEL_EVENT = "learning_label"  # a label-only case's answer: a label, the decision unchanged


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
        reason = f"escalated by a Tier {tier(task, policy)} reviewer: {answer.rationale}"
        if tier(task, policy) == 2:  # noqa: PLR2004 - Tier 2 escalates to Tier 3, a page
            close(
                session,
                task,
                Exit.TIER3,
                reason,
                answer.reviewer,
                answer.key("answer"),
                policy,
                now,
            )
        else:
            escalate(session, task, Exit.REVIEWER_ESCALATION, reason, answer.reviewer, policy, now)
        task.decision, task.reviewer, task.annotation_id = (
            "escalated",
            answer.reviewer,
            answer.annotation_id,
        )
        return "escalated"
    origin = learning_origin(session, task)  # a pick: the answer is a label, no sign-off
    if task.queue == SIGNOFF_QUEUE:
        first = session.get(ReviewTask, task.parent_case_id or "")
        if first is not None and first.decision != answer.decision:
            _record_answer(session, task, answer, "signoff_disagreement", policy, now)
            reason = (
                f"second sign-off disagrees: the first reviewer chose {first.decision}, "
                f"the second {answer.decision}"
            )
            escalate(session, task, Exit.SIGNOFF_DISAGREEMENT, reason, answer.reviewer, policy, now)
            return "escalated"
    elif origin is None and tier(task, policy) == 1 and is_high_impact(decision.amount, policy):
        _record_answer(session, task, answer, "first_signoff", policy, now)
        open_case(session, task, SIGNOFF_QUEUE, policy, now)
        return "awaiting_signoff"
    if origin is not None:
        record_label(session, task, origin, answer, policy, now)
    else:
        finalize(session, task, answer, policy, now)
    return "applied"


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


def _seen(session: Session, answer: Answer) -> bool:
    """Stored, or held back by a batch of answers being applied (`audit.deferred`)."""
    return bool(audit.known(session, [answer.key(kind) for kind in _KINDS]))


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


def finalize(
    session: Session, task: ReviewTask, answer: Answer, policy: Policy, now: datetime
) -> bool:
    """The final decision: audited once (with its SLA), written to the decision, learned from;
    False if this answer was applied before."""
    event = audit.event(
        answer.key("review"),
        "review",
        answer.reviewer,
        now,
        transaction_id=task.transaction_id,
        decision=answer.decision,
        review_rationale=answer.rationale,
        sla_metadata=sla_metadata(task, policy, now),
        annotation_id=answer.annotation_id,
    )
    new = audit.append(session, [event]) == 1
    if new:
        session.execute(
            update(Decision)
            .where(Decision.transaction_id == task.transaction_id)
            .values(
                final_decision=answer.decision,
                reviewer=answer.reviewer,
                review_rationale=answer.rationale,
                reviewed_at=now,
            )
            # by key: "evaluate" would scan every decision a batch of answers holds in memory
            .execution_options(synchronize_session="fetch")
        )
        _learn(session, task, answer, "review", now)
    _decided(task, answer, now)
    return new


def _learn(session: Session, task: ReviewTask, answer: Answer, source: str, now: datetime) -> None:
    """A human decision as a label, known from now (other answers teach nothing)."""
    if answer.decision in HUMAN_DECISIONS:
        label = {
            "transaction_id": task.transaction_id,
            "is_fraud": HUMAN_DECISIONS[answer.decision],
            "known_at": now,
            "source": source,
            "actor": answer.reviewer,
        }
        add_labels(session, [label])


def learning_origin(session: Session, task: ReviewTask) -> ReviewTask | None:
    """The label-only case (active learning, post-verify) `task` is, or was escalated from;
    None for the router's."""
    if task.queue in LABEL_ONLY_QUEUES:
        return task
    parent = session.get(ReviewTask, task.parent_case_id) if task.parent_case_id else None
    return parent if parent is not None and parent.queue in LABEL_ONLY_QUEUES else None


def label_source(origin: ReviewTask) -> str:
    """Where a label-only case's label came from: what the estimates tell apart."""
    if origin.queue == POST_VERIFY_QUEUE:
        return POST_VERIFY_QUEUE
    return EXPLORATION if origin.strategy == EXPLORATION else ACTIVE_LEARNING_QUEUE


def record_label(
    session: Session,
    task: ReviewTask,
    origin: ReviewTask,
    answer: Answer,
    policy: Policy,
    now: datetime,
) -> bool:
    """An answer on a label-only case: its label and audit event (with the origin's queue,
    strategy or stratum, and propensity), the case closed, the decision left as the router made
    it; False if this answer was applied before."""
    source = label_source(origin)
    event = audit.event(
        answer.key("review"),
        LABEL_EVENT,
        answer.reviewer,
        now,
        transaction_id=task.transaction_id,
        decision=answer.decision,
        review_rationale=answer.rationale,
        sla_metadata=sla_metadata(task, policy, now),
        annotation_id=answer.annotation_id,
        case_id=task.case_id,
        label_source=source,
        origin_queue=origin.queue,
        strategy=origin.strategy,
        propensity=origin.propensity,
    )
    new = audit.append(session, [event]) == 1
    if new:
        _learn(session, task, answer, source, now)
    _decided(task, answer, now)
    return new


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
    patch(task, data={"notice": scrub(f"Returned: {reason}")})


def _annotate(session: Session, task: ReviewTask, answer: Answer, now: datetime) -> None:
    """A note for whoever works the case next: it stays open, its SLA clock running."""
    _keep_open(session, task, answer, NOTE_EVENT, now)
    audit.flush(session)  # the notes are read from the trail: this one must be in it
    patch(task, data={"reviewer_notes": reviewer_notes(session, task.transaction_id)})


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
    patch(task, delete_annotations=[answer.annotation_id])
