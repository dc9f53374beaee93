"""Apply reviewers' annotations to the decision store: validated, once each, audited.

Webhooks (`api.webhooks`) and the periodic reconciliation pass (`sync_reviews`) both come
through `apply_annotation`, so an annotation seen twice, by either path, counts once.
"""

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy.orm import Session

from fraudloop.policy import Policy
from fraudloop.storage import Decision, ReviewTask
from labeling.client import LabelStudioClient
from labeling.label_config import ValidationProblem
from labeling.review.answers import Answer, receive
from labeling.sync import AnnotationRecord, fetch_annotations, parse_outcome


@dataclass
class SyncResult:
    applied: int = 0
    awaiting_signoff: int = 0
    escalated: int = 0
    returned: int = 0
    annotated: int = 0
    invalid: int = 0
    late: int = 0
    already_seen: int = 0
    unknown: int = 0

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


def apply_annotation(
    session: Session, record: AnnotationRecord, now: datetime, policy: Policy
) -> str:
    """One annotation into the store; returns what happened (see `labeling.review.answers.receive`)."""
    task = session.get(ReviewTask, record.case_id)
    decision = session.get(Decision, task.transaction_id) if task else None
    if task is None or decision is None:
        return "unknown"  # not ours (another deployment, or a deleted store)
    outcome = parse_outcome(record, decision.recommendation)
    answer = Answer(
        case_id=record.case_id,
        annotation_id=record.annotation_id,
        updated_at=record.updated_at.isoformat(),
        reviewer=record.reviewer,
        decision=None if isinstance(outcome, ValidationProblem) else outcome.decision,
        rationale=record.rationale,
        problem=outcome.reason if isinstance(outcome, ValidationProblem) else None,
    )
    return receive(session, answer, policy, now)


def sync_reviews(
    session: Session,
    client: LabelStudioClient,
    projects: dict[str, int],
    now: datetime,
    policy: Policy,
    since: datetime | None = None,
) -> SyncResult:
    """Pull annotations from every queue and apply them; safe to run any number of times."""
    result = SyncResult()
    for project_id in projects.values():
        for record in fetch_annotations(client, project_id, since):
            result.add(apply_annotation(session, record, now, policy))
    return result
