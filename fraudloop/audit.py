"""Audit events with the SPEC fields; appended once per change, keyed so retries add nothing."""

import uuid
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop.storage import AuditEvent, insert_ignore, read_frame


def event(
    key: str,
    event_type: str,
    actor: str,
    timestamp: datetime,
    **fields: Any,
) -> dict[str, Any]:
    """One audit row; `key` makes it idempotent (the same change twice is one event)."""
    return {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"fraudloop:{key}")),
        "idempotency_key": key,
        "timestamp": timestamp,
        "event_type": event_type,
        "actor": actor,
        "transaction_id": fields.pop("transaction_id", None),
        "input_snapshot": fields.pop("input_snapshot", None),
        "model_version": fields.pop("model_version", None),
        "model_confidence": fields.pop("model_confidence", None),
        "explanation_tokens": fields.pop("explanation_tokens", None),
        "decision": fields.pop("decision", None),
        "review_rationale": fields.pop("review_rationale", None),
        "sla_metadata": fields.pop("sla_metadata", None),
        "details": fields or None,
    }


def append(session: Session, events: list[dict[str, Any]]) -> int:
    return insert_ignore(session, AuditEvent, events)


def trail(session: Session, transaction_id: str | None = None) -> pd.DataFrame:
    """Events in the order they were appended, optionally for one transaction."""
    stmt = select(AuditEvent).order_by(AuditEvent.seq)
    if transaction_id is not None:
        stmt = stmt.where(AuditEvent.transaction_id == transaction_id)
    return read_frame(session, stmt)
