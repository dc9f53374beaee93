"""Deliver review work from the store's outbox to Label Studio; what fails stays for the next run.

An outage stops a run (the cases wait for the next one). A case Label Studio must never receive
(it would show a reviewer something that looks like personal data) is held instead: status
`held`, its reason kept and audited, and the cases after it go on.
"""

from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.alerts import Alert
from fraudloop.errors import FraudloopError, ServiceUnavailable
from fraudloop.policy import Policy, SimilarWeights
from fraudloop.storage import ReviewTask, set_status
from labeling.client import LabelStudioClient
from labeling.review.cases import review_cases
from labeling.tasks import build_task, push_tasks

HELD = "held"


@dataclass
class DeliveryResult:
    delivered: int = 0
    pending: int = 0
    error: str | None = None
    held: dict[str, str] = field(default_factory=dict)  # case id -> why it was set aside


def deliver_by_policy(
    session: Session,
    client: LabelStudioClient,
    projects: dict[str, int],
    policy: Policy,
    now: datetime,
) -> DeliveryResult:
    """`deliver_pending` with the micro-batch and similar-case settings of the policy."""
    return deliver_pending(
        session,
        client,
        projects,
        policy.review.micro_batch,
        now,
        similar_k=policy.escalation.similar_cases,
        similar_pool=policy.escalation.similar_pool,
        similar_weights=policy.escalation.similar_weights,
    )


def deliver_pending(
    session: Session,
    client: LabelStudioClient,
    projects: dict[str, int],
    micro_batch: int,
    now: datetime,
    limit: int = 10_000,
    similar_k: int = 0,
    similar_pool: int = 1,
    similar_weights: SimilarWeights | None = None,
) -> DeliveryResult:
    """Push pending cases in micro-batches, highest priority first; stop at the first outage.

    With `similar_k`, each task shows that many similar cases reviewers already decided
    (`labeling.review.similar.similar_cases`).
    """
    result = DeliveryResult()
    tasks = sorted(pending_deliveries(session, limit), key=lambda t: t.queue)
    for queue, group in groupby(tasks, key=lambda t: t.queue):
        queued = list(group)
        for start in range(0, len(queued), micro_batch):
            chunk = queued[start : start + micro_batch]
            try:
                cases = review_cases(session, chunk, similar_k, similar_pool, similar_weights)
                refused = _undeliverable(cases)
                for t in [t for t in chunk if t.case_id in refused]:
                    _hold(session, t, refused[t.case_id], now)
                result.held |= refused
                chunk = [t for t in chunk if t.case_id not in refused]
                cases = [c for c in cases if c["case_id"] not in refused]
                ids = push_tasks(client, projects[queue], cases) if cases else {}
            except ServiceUnavailable as exc:
                for t in chunk:
                    set_status(session, [t.case_id], attempts=t.attempts + 1, last_error=str(exc))
                result.error = str(exc)
                result.pending = len(tasks) - result.delivered
                return result
            for t in chunk:
                set_status(
                    session,
                    [t.case_id],
                    status="delivered",
                    ls_project_id=projects[queue],
                    ls_task_id=ids[t.case_id],
                    delivered_at=now,
                    attempts=t.attempts + 1,
                    last_error=None,
                )
            result.delivered += len(chunk)
    return result


def _undeliverable(cases: list[dict[str, Any]]) -> dict[str, str]:
    """case id -> why its task may not be built (`labeling.tasks.build_task` refuses it)."""
    refused = {}
    for case in cases:
        try:
            build_task(case)
        except FraudloopError as exc:
            refused[case["case_id"]] = str(exc)
    return refused


def _hold(session: Session, task: ReviewTask, reason: str, now: datetime) -> None:
    set_status(session, [task.case_id], status=HELD, attempts=task.attempts + 1, last_error=reason)
    event = audit.event(
        f"held:{task.case_id}",
        "delivery_held",
        "outbox",
        now,
        transaction_id=task.transaction_id,
        case_id=task.case_id,
        reason=reason,
    )
    audit.append(session, [event])


def pending_deliveries(session: Session, limit: int) -> list[ReviewTask]:
    """Review work not yet in Label Studio, most valuable first."""
    stmt = (
        select(ReviewTask)
        .where(ReviewTask.status == "pending")
        .order_by(ReviewTask.priority.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def held_alerts(held: dict[str, str], now: datetime) -> list[Alert]:
    """One alert per case set aside: someone must look at what the feed sent."""
    return [
        Alert(
            rule="delivery_held",
            scope=case_id,
            value=1,
            threshold=0,
            window_minutes=None,
            at=now,
            message=f"review case {case_id} held back from Label Studio: {reason}",
        )
        for case_id, reason in held.items()
    ]
