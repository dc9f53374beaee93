"""The decision store: decisions with their review work and audit events, written together once;
rejected records kept in quarantine; the frames monitoring reads."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.redaction import redact
from fraudloop.schema import ID_LENGTH, Rejection
from fraudloop.storage import Decision, Quarantine, ReviewTask, insert_ignore, read_frame

HUMAN_DECISIONS = {"human_approve": 0, "human_reject": 1}


@dataclass
class DecisionBatch:
    decisions: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def save(session: Session, batch: DecisionBatch) -> int:
    """Persist a batch atomically; decisions already stored are kept (idempotent). Returns new."""
    new = insert_ignore(session, Decision, batch.decisions)
    insert_ignore(session, ReviewTask, batch.reviews)
    audit.append(session, batch.events)
    return new


def quarantine(session: Session, rejections: list[Rejection], now: datetime) -> int:
    """Keep rejected records with their reason; ids and field names are cut to the column size
    (the record itself keeps the full text), so odd input can never fail the write."""
    rows = [
        {
            "received_at": now,
            "transaction_id": r.transaction_id[:ID_LENGTH] if r.transaction_id else None,
            "field": r.field[:ID_LENGTH],
            "problem": "; ".join(f"{e.field}: {e.problem}" for e in r.errors) or r.problem,
            "record": redact(r.record),
        }
        for r in rejections
    ]
    return insert_ignore(session, Quarantine, rows)


def monitoring_frame(session: Session, since: datetime | None = None) -> pd.DataFrame:
    """Decisions with their review timing, the one frame every monitoring metric reads."""
    stmt = select(
        Decision,
        ReviewTask.created_at.label("review_created_at"),
        ReviewTask.sla_due_at,
    ).outerjoin(
        ReviewTask,
        (ReviewTask.transaction_id == Decision.transaction_id)
        & ReviewTask.parent_case_id.is_(None),  # the first case: escalations are its follow-ups
    )
    if since is not None:
        stmt = stmt.where(Decision.decided_at >= since)
    frame = read_frame(session, stmt)
    for column in ("decided_at", "tx_datetime", "reviewed_at", "review_created_at", "sla_due_at"):
        frame[column] = pd.to_datetime(frame[column])
    return frame
