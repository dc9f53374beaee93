"""Deliver review work from the store's outbox to Label Studio; what fails stays for the next run."""

from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

from sqlalchemy.orm import Session

from fraudloop import decisions, tiers
from fraudloop.errors import ServiceUnavailable
from fraudloop.policy import Policy
from fraudloop.storage import set_status
from labeling.client import LabelStudioClient
from labeling.tasks import push_tasks


@dataclass
class DeliveryResult:
    delivered: int = 0
    pending: int = 0
    error: str | None = None


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
) -> DeliveryResult:
    """Push pending cases in micro-batches, highest priority first; stop at the first outage.

    With `similar_k`, each task shows that many similar cases reviewers already decided.
    """
    result = DeliveryResult()
    tasks = sorted(decisions.pending_deliveries(session, limit), key=lambda t: t.queue)
    for queue, group in groupby(tasks, key=lambda t: t.queue):
        queued = list(group)
        for start in range(0, len(queued), micro_batch):
            chunk = queued[start : start + micro_batch]
            try:
                cases = decisions.review_cases(session, chunk, similar_k, similar_pool)
                notices = [tiers.notice(session, t) for t in chunk]
                cases = [{**c, "notice": n} for c, n in zip(cases, notices, strict=True)]
                ids = push_tasks(client, projects[queue], cases)
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
