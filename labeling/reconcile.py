"""Apply reviewers' annotations to the decision store: validated, once each, audited.

Webhooks (`api.webhooks`) and the periodic reconciliation pass (`sync_reviews`) both come
through `apply_annotation`, so an annotation seen twice, by either path, counts once.

The reconciliation pass reads only what changed in each queue since its watermark (Label
Studio's clock when the last pass began, or the newest change it read if later; kept in the
store with the answers it applied), less a safety overlap for changes saved while the last pass
was reading; what the overlap reads again is already seen. A batch of answers shares one audit append (`audit.deferred`).
"""

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.policy import Policy
from fraudloop.storage import Decision, Reviewer, ReviewTask, SyncWatermark
from labeling.client import LabelStudioClient
from labeling.label_config import ValidationProblem
from labeling.review.answers import Answer, receive
from labeling.sync import AnnotationRecord, fetch_annotations, parse_outcome, server_now
from labeling.tasks import as_utc

APPLY_CHUNK = 1000  # answers per audit append and per preload (ids bound in one IN list)


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
    full: bool = False,
) -> SyncResult:
    """Pull what changed in every queue since its watermark (everything the first time, or
    with `full`) and apply it; safe to run any number of times."""
    result = SyncResult()
    overlap = timedelta(seconds=policy.schedules.sync_overlap_seconds)
    read_at = server_now(client)  # before any read: every change up to it is visible to them
    for project_id in projects.values():
        source = watermark_source(client.url, project_id)
        mark = None if full else session.get(SyncWatermark, source)
        records = fetch_annotations(client, project_id, mark.updated_at - overlap if mark else None)
        apply_records(session, records, now, policy, result)
        newest = max([read_at, *(_stamp(r) for r in records)])
        if mark is None or newest > mark.updated_at:
            session.merge(SyncWatermark(source=source, updated_at=newest, synced_at=now))
    return result


def apply_records(
    session: Session,
    records: list[AnnotationRecord],
    now: datetime,
    policy: Policy,
    result: SyncResult,
) -> None:
    """Apply annotations in order, a chunk at a time: its cases, decisions and reviewers read
    in three queries, its audit events chained in one append."""
    for start in range(0, len(records), APPLY_CHUNK):
        chunk = records[start : start + APPLY_CHUNK]
        loaded = _preload(session, [r.case_id for r in chunk])  # held: the session's map is weak
        with audit.deferred(session):
            for record in chunk:
                result.add(apply_annotation(session, record, now, policy))
        del loaded


def watermark_source(url: str, project_id: int) -> str:
    """A queue's watermark is its server's and project's: another server starts from scratch."""
    return f"{url.rstrip('/')}/projects/{project_id}"


def _stamp(record: AnnotationRecord) -> datetime:
    """How far a record takes the watermark: its task's change, which the next pass filters
    on (saved just after the annotation's own), as naive UTC."""
    return as_utc(record.task_updated_at or record.updated_at).replace(tzinfo=None)


def _preload(session: Session, case_ids: list[str]) -> list[object]:
    """Load what applying these answers reads by key, so `Session.get` finds it in memory
    while the caller holds what this returns."""
    tasks = list(session.scalars(select(ReviewTask).where(ReviewTask.case_id.in_(case_ids))))
    parents = [t.parent_case_id for t in tasks if t.parent_case_id]
    ids = [t.transaction_id for t in tasks]
    return [
        *tasks,
        *session.scalars(select(ReviewTask).where(ReviewTask.case_id.in_(parents))),
        *session.scalars(select(Decision).where(Decision.transaction_id.in_(ids))),
        *session.scalars(select(Reviewer)),
    ]
