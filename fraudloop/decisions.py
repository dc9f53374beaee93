"""The decision store: decisions with their review work and audit events, written together once;
rejected records kept in quarantine; the frames monitoring reads."""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.policy import LABEL_ONLY_QUEUES
from fraudloop.redaction import redact
from fraudloop.schema import ID_LENGTH, Rejection, printable
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


def quarantine(session: Session, rejections: list[Rejection], now: datetime, max_bytes: int) -> int:
    """Keep rejected records with their reason, once each (the same record sent again is the
    same row, by its content hash), so odd input can never fail the write nor fill the disk:
    text is made storable (`schema.printable`), ids and field names cut to the column size, and
    a record over `max_bytes` (policy `limits.quarantine_record_bytes`) kept as an excerpt."""
    rows = []
    for r in rejections:
        text = json.dumps(r.record, sort_keys=True, default=str)  # ASCII: surrogates escaped
        record = storable(redact(r.record))
        if len(text) > max_bytes:
            record = {
                "excerpt": printable(json.dumps(record, default=str)[:max_bytes]),
                "bytes": len(text),
            }
        rows.append(
            {
                "received_at": now,
                "transaction_id": printable(r.transaction_id)[:ID_LENGTH]
                if r.transaction_id
                else None,
                "field": printable(r.field)[:ID_LENGTH],
                "problem": printable(
                    "; ".join(f"{e.field}: {e.problem}" for e in r.errors) or r.problem
                ),
                "record": record,
                "content_hash": hashlib.sha256(
                    f"{text}|{r.field}|{r.problem}".encode()
                ).hexdigest(),
            }
        )
    return insert_ignore(session, Quarantine, rows)


def storable(value: Any) -> Any:
    """A JSON value with every key and text made storable (`schema.printable`)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def monitoring_frame(session: Session, since: datetime | None = None) -> pd.DataFrame:
    """Decisions with their review timing, the one frame every monitoring metric reads."""
    stmt = select(
        Decision,
        ReviewTask.created_at.label("review_created_at"),
        ReviewTask.sla_due_at,
    ).outerjoin(
        ReviewTask,
        (ReviewTask.transaction_id == Decision.transaction_id)
        & ReviewTask.parent_case_id.is_(None)  # the first case: escalations are its follow-ups
        & ReviewTask.queue.notin_(
            LABEL_ONLY_QUEUES
        ),  # a pick or audit case: labelled, never decided
    )
    if since is not None:
        stmt = stmt.where(Decision.decided_at >= since)
    frame = read_frame(session, stmt)
    for column in ("decided_at", "tx_datetime", "reviewed_at", "review_created_at", "sla_due_at"):
        frame[column] = pd.to_datetime(frame[column])
    return frame
