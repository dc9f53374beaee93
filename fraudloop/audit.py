"""Audit events with the SPEC fields in one hash chain: append-only, tamper-evident, idempotent.

Each event stores the hash of the event before it (`prev_hash`) and its own
`hash = sha256(prev_hash + canonical JSON of its content)`, in `seq` order. Editing an event
breaks its own hash; deleting or reordering events breaks the next event's link. A retry adds
nothing: an event whose idempotency key is stored is skipped and does not advance the chain.

Writers serialize on the chain's head: PostgreSQL through a transaction-scoped advisory lock,
SQLite through its database write lock (taken before the head is read). The lock is held until
the caller commits, so append late in a transaction. The head itself is a row
(`storage.AuditChainHead`) an append moves from the hash it read to its last event's: a writer
that read a stale head (PostgreSQL at an isolation level above READ COMMITTED, its default, or
code that skipped the lock) moves nothing and fails with `ChainMoved`, an error to retry, never
a fork.
"""

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pandas as pd
from sqlalchemy import CursorResult, Row, Table, select, text, update
from sqlalchemy.orm import Session

from fraudloop.bulk import insert_rows
from fraudloop.errors import FraudloopError
from fraudloop.storage import (
    AuditChainHead,
    AuditEvent,
    json_default,
    json_text,
    one_of,
    read_frame,
)

GENESIS = "0" * 64  # the `prev_hash` of the first event
CONTENT_FIELDS = (  # what the hash covers; never seq (chain order is seq) nor the hashes
    "event_id",
    "idempotency_key",
    "timestamp",
    "event_type",
    "transaction_id",
    "actor",
    "input_snapshot",
    "model_version",
    "model_confidence",
    "explanation_tokens",
    "decision",
    "review_rationale",
    "sla_metadata",
    "details",
)
_JSON_FIELDS = ("input_snapshot", "explanation_tokens", "sla_metadata", "details")
_HEAD = 1  # the id of the chain head's one row
_CHAIN_LOCK = 0x6672617564617564  # "fraudaud": the one PostgreSQL advisory lock of the chain
_SQLITE_WRITE_LOCK = text("UPDATE audit_events SET seq = seq WHERE 0")  # begins the write txn
_KEYS_PER_QUERY = 5_000
_STREAM_BATCH = 2_000
_CANONICAL = json.JSONEncoder(  # what `json.dumps` builds per call with these arguments
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    default=json_default,
)
_EVENT_ID_NAMESPACE = uuid.NAMESPACE_URL.bytes
_STORED_CANONICAL = (  # what orjson would write differently from `canonical` it refuses instead
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


class ChainMoved(RuntimeError):
    """The chain's head is not where this writer read it: retry the transaction."""


@dataclass(frozen=True)
class VerifyResult:
    """`head_hash` is the last event's hash: keep it elsewhere to also detect a cut-off tail."""

    ok: bool
    n_events: int
    first_bad_seq: int | None = None
    first_bad_event_id: str | None = None
    problem: str | None = None  # "edited" | "deleted or reordered"
    n_problems: int = 0
    head_hash: str | None = None

    def message(self) -> str:
        if self.ok:
            head = f", head {self.head_hash}" if self.head_hash else ""
            return f"audit trail intact: {self.n_events:,} events{head}"
        event = f"event seq {self.first_bad_seq} (event_id {self.first_bad_event_id})"
        what = (
            f"{event} was edited: its content no longer matches its hash"
            if self.problem == "edited"
            else f"the chain breaks just before {event}: an event was deleted or reordered"
        )
        return (
            f"audit trail broken: {what} ({self.n_problems} problem(s) in {self.n_events:,} events)"
        )


def event(
    key: str,
    event_type: str,
    actor: str,
    timestamp: datetime,
    **fields: Any,
) -> dict[str, Any]:
    """One audit row; `key` makes it idempotent (the same change twice is one event)."""
    return {
        "event_id": event_id(key),
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


def event_id(key: str) -> str:
    """`str(uuid.uuid5(uuid.NAMESPACE_URL, "fraudloop:" + key))` without building a `UUID`
    (most of its cost, paid for every scored transaction): SHA-1, version 5, RFC 4122 variant."""
    digest = hashlib.sha1(_EVENT_ID_NAMESPACE + f"fraudloop:{key}".encode()).hexdigest()
    variant = "89ab"[int(digest[16], 16) & 3]
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"


def canonical(content: Mapping[str, Any]) -> str:
    """The hashed text: sorted keys, no whitespace, ISO timestamps, finite numbers only."""
    return _CANONICAL.encode(content)


def chain_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return _sha256(prev_hash, canonical(content))


def stored_canonical(content: Mapping[str, Any]) -> str:
    """`canonical` of a stored form (`_stored_form`: JSON types, no NaN), a tenth of the time.

    orjson writes what `json.dumps` writes (same key order, escapes and float digits) except for
    floats below 1e-4, which it spells without or with a shorter exponent (`0.00001`, `1.5e-7`
    for `1e-05`, `1.5e-07`): text with such a number, or anything orjson refuses, goes to
    `canonical`. Only for stored forms: orjson writes NaN as null where `canonical` refuses it.
    """
    try:
        text = orjson.dumps(content, option=_STORED_CANONICAL)
    except orjson.JSONEncodeError:
        return canonical(content)
    if b"0.0000" in text or b"e-" in text:  # such a number (or text that only looks like one)
        return canonical(content)
    return text.decode()


def _sha256(prev_hash: str, text: str) -> str:
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def append(session: Session, events: list[dict[str, Any]]) -> int:
    """Chain and insert the events not stored yet, in the caller's transaction; returns how many."""
    if not events:
        return 0
    _lock_chain(session)
    fresh = _unseen(session, events)
    if not fresh:
        return 0
    head = session.scalar(select(AuditChainHead.hash).where(AuditChainHead.id == _HEAD))
    if head is None:
        raise FraudloopError("the audit chain has no head row: the store's schema is not migrated")
    prev = head
    rows = []
    for ev in fresh:
        row = _stored_form(ev)
        content = {**row, "timestamp": row["timestamp"].isoformat()}
        row["prev_hash"], row["hash"] = prev, _sha256(prev, stored_canonical(content))
        prev = row["hash"]
        rows.append(row)
    moved = session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == _HEAD, AuditChainHead.hash == head)
        .values(hash=prev)
    )
    if cast(CursorResult[Any], moved).rowcount != 1:
        raise ChainMoved(
            "another writer appended to the audit chain since this one read its head: retry"
        )
    return insert_rows(session, cast(Table, AuditEvent.__table__), rows)


def verify(session: Session) -> VerifyResult:
    """Recompute the chain in seq order, streaming; reports the first broken event."""
    n_events = n_problems = 0
    first: tuple[int, str, str] | None = None
    prev_hash = GENESIS
    for record in _stream(session):
        n_events += 1
        problem = _check(record, prev_hash)
        if problem is not None:
            n_problems += 1
            first = first or (record["seq"], record["event_id"], problem)
        prev_hash = record["hash"]
    return VerifyResult(
        ok=first is None,
        n_events=n_events,
        first_bad_seq=first[0] if first else None,
        first_bad_event_id=first[1] if first else None,
        problem=first[2] if first else None,
        n_problems=n_problems,
        head_hash=prev_hash if n_events else None,
    )


def export_jsonl(session: Session, path: Path, transaction_id: str | None = None) -> int:
    """Events in chain order, one JSON object a line (with seq and hashes); returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    n = 0
    with partial.open("w", encoding="utf-8") as out:
        for record in _stream(session, transaction_id):
            out.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            n += 1
    partial.replace(path)
    return n


def trail(session: Session, transaction_id: str | None = None) -> pd.DataFrame:
    """Events in the order they were appended, optionally for one transaction."""
    stmt = select(AuditEvent).order_by(AuditEvent.seq)
    if transaction_id is not None:
        stmt = stmt.where(AuditEvent.transaction_id == transaction_id)
    return read_frame(session, stmt)


def _lock_chain(session: Session) -> None:
    """Serialize writers before the head is read, until the caller's transaction ends."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    elif dialect == "sqlite":
        session.execute(_SQLITE_WRITE_LOCK)


def _unseen(session: Session, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events whose key is neither stored nor repeated earlier in the batch, in batch order."""
    by_key: dict[str, dict[str, Any]] = {}
    for ev in events:
        by_key.setdefault(ev["idempotency_key"], ev)
    for key in _stored_keys(session, list(by_key)):
        del by_key[key]
    return list(by_key.values())


def _stored_keys(session: Session, keys: list[str]) -> Iterator[str]:
    """The keys already stored: one query on PostgreSQL (one array), a few on SQLite."""
    dialect = session.get_bind().dialect.name
    column = AuditEvent.idempotency_key
    stmt = select(column).where(one_of(column, "keys", dialect))
    per_query = len(keys) if dialect == "postgresql" else _KEYS_PER_QUERY
    for start in range(0, len(keys), per_query):
        yield from session.scalars(stmt, {"keys": keys[start : start + per_query]})


def _stored_form(ev: Mapping[str, Any]) -> dict[str, Any]:
    """The event exactly as the database will give it back, so the hash can be recomputed."""
    row: dict[str, Any] = {name: ev.get(name) for name in CONTENT_FIELDS}
    row["timestamp"] = _naive_utc(row["timestamp"])
    confidence = row["model_confidence"]
    row["model_confidence"] = (
        None if confidence is None or math.isnan(confidence) else float(confidence)
    )
    nested = {name: row[name] for name in _JSON_FIELDS if row[name] is not None}
    if nested:  # one JSON round trip: tuples, numpy scalars, int keys, NaN settle as stored
        row.update(orjson.loads(json_text(nested)))
    return row


def _stream(session: Session, transaction_id: str | None = None) -> Iterator[dict[str, Any]]:
    columns = [AuditEvent.seq, *(getattr(AuditEvent, f) for f in CONTENT_FIELDS)]
    stmt = select(*columns, AuditEvent.prev_hash, AuditEvent.hash).order_by(AuditEvent.seq)
    if transaction_id is not None:
        stmt = stmt.where(AuditEvent.transaction_id == transaction_id)
    rows: Iterable[Row[Any]] = session.execute(stmt.execution_options(yield_per=_STREAM_BATCH))
    for row in rows:
        record = dict(row._mapping)
        if isinstance(record["timestamp"], datetime):
            record["timestamp"] = record["timestamp"].isoformat()
        yield record


def _check(record: Mapping[str, Any], prev_hash: str) -> str | None:
    content = {name: record[name] for name in CONTENT_FIELDS}
    if chain_hash(record["prev_hash"] or "", content) != record["hash"]:
        return "edited"
    if record["prev_hash"] != prev_hash:
        return "deleted or reordered"
    return None


def _naive_utc(ts: datetime) -> datetime:
    """A plain naive-UTC datetime (what both databases store and return unchanged)."""
    if type(ts) is datetime and ts.tzinfo is None:  # already one: a batch's events share it
        return ts
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond)
