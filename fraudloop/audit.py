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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pandas as pd
from sqlalchemy import CursorResult, Row, Table, and_, case, exists, func, or_, select, text, update
from sqlalchemy.orm import Session, aliased

from fraudloop import merkle
from fraudloop.bulk import insert_rows
from fraudloop.errors import FraudloopError
from fraudloop.storage import (
    AuditChainHead,
    AuditEvent,
    Decision,
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
# the events that set a decision's final state (`decisions.final_decision`, reviewer, rationale):
# the router's (`pipeline.route`: final, or none yet) and the final review's
# (`labeling.review.answers.finalize`); any other event leaves the decision as it was
ROUTED, DECIDED, REVIEWED = "routed_to_review", "decision", "review"
DECISION_EVENTS = (DECIDED, ROUTED, REVIEWED)
_LISTED = 10  # findings of one kind spelled out; the rest are counted
_HEAD = 1  # the id of the chain head's one row
_CHAIN_LOCK = 0x6672617564617564  # "fraudaud": the one PostgreSQL advisory lock of the chain
_SQLITE_WRITE_LOCK = text("UPDATE audit_events SET seq = seq WHERE 0")  # begins the write txn
_KEYS_PER_QUERY = 5_000
_STREAM_BATCH = 2_000
_DEFERRED = "fraudloop.audit.deferred"  # `Session.info` key of the events `deferred` holds back
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
class Anchor:
    """What a signed checkpoint says the chain was: `n_events` long, ending in `head_hash`, the
    events' hashes under `merkle_root` (hex, RFC 6962); `name` says where it came from."""

    n_events: int
    head_hash: str
    merkle_root: str
    name: str


@dataclass(frozen=True)
class Finding:
    """Something wrong beside a broken link: `kind` is "head", "truncated", "rewritten",
    "checkpoint" or "decision"; `detail` says what, naming the event, checkpoint or decision."""

    kind: str
    detail: str


@dataclass(frozen=True)
class VerifyResult:
    """`head_hash` is the last event's hash; the head row, checkpoints and decisions each add
    `findings`. Without checkpoints a cut-off tail that also moved the head row goes unseen."""

    ok: bool
    n_events: int
    first_bad_seq: int | None = None
    first_bad_event_id: str | None = None
    problem: str | None = None  # "edited" | "deleted or reordered"
    n_problems: int = 0
    head_hash: str | None = None
    findings: tuple[Finding, ...] = ()
    n_decisions: int = 0
    n_checkpoints: int = 0

    def message(self) -> str:
        if self.ok:
            head = f", head {self.head_hash}" if self.head_hash else ""
            checked = f"; {self.n_decisions:,} decisions agree with it" if self.n_decisions else ""
            signed = (
                f"; {self.n_checkpoints} signed checkpoint(s) hold" if self.n_checkpoints else ""
            )
            return f"audit trail intact: {self.n_events:,} events{head}{checked}{signed}"
        problems = [f"{f.kind}: {f.detail}" for f in self.findings]
        if self.first_bad_seq is not None:
            problems.insert(0, self._chain_problem())
        return "audit trail broken: " + "\n  ".join(problems)

    def _chain_problem(self) -> str:
        event = f"event seq {self.first_bad_seq} (event_id {self.first_bad_event_id})"
        what = (
            f"{event} was edited: its content no longer matches its hash"
            if self.problem == "edited"
            else f"the chain breaks just before {event}: an event was deleted or reordered"
        )
        return f"{what} ({self.n_problems} problem(s) in {self.n_events:,} events)"


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
    """Chain and insert the events not stored yet, in the caller's transaction; returns how many.

    Inside `deferred`, the events are checked and held back instead, and chained at its end.
    """
    if not events:
        return 0
    held = session.info.get(_DEFERRED)
    if held is not None:
        return _hold(session, held, events)
    # the stored form and its canonical text do not depend on the chain: made before the lock,
    # which then covers only the key check, the hashes and the insert (concurrent writers wait
    # on the lock, so what it covers bounds how far they scale)
    prepared = {ev["idempotency_key"]: _prepared(ev) for ev in reversed(events)}
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
        row, canonical = prepared[ev["idempotency_key"]]
        row["prev_hash"], row["hash"] = prev, _sha256(prev, canonical)
        prev = row["hash"]
        rows.append(row)
    moved = session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == _HEAD, AuditChainHead.hash == head)
        .values(hash=prev, n_events=AuditChainHead.n_events + len(rows))
    )
    if cast(CursorResult[Any], moved).rowcount != 1:
        raise ChainMoved(
            "another writer appended to the audit chain since this one read its head: retry"
        )
    return insert_rows(session, cast(Table, AuditEvent.__table__), rows)


@contextmanager
def deferred(session: Session) -> Iterator[None]:
    """Many small appends as one: inside the block `append` checks each event's key against
    the store and the events held so far, returns what it would have returned, and holds the
    new ones; at the end of the block they are chained and inserted in one append, in the order
    they came. The chain is locked from the first append on, as it would have been. Reads of
    the trail inside the block see only stored events: `flush` first where that matters."""
    if _DEFERRED in session.info:  # nested: the outer block appends
        yield
        return
    session.info[_DEFERRED] = {}
    try:
        yield
        flush(session)
    finally:
        session.info.pop(_DEFERRED, None)


def flush(session: Session) -> int:
    """Chain and insert what `deferred` holds now; returns how many."""
    held = session.info.pop(_DEFERRED, None)
    if held is None:
        return 0
    try:
        return append(session, list(held.values()))
    finally:
        session.info[_DEFERRED] = {}


def known(session: Session, keys: list[str]) -> set[str]:
    """The keys among `keys` that are stored or held back by `deferred`."""
    held = session.info.get(_DEFERRED) or {}
    return {k for k in keys if k in held} | set(_stored_keys(session, keys))


def _hold(session: Session, held: dict[str, dict[str, Any]], events: list[dict[str, Any]]) -> int:
    _lock_chain(session)
    fresh = [ev for ev in _unseen(session, events) if ev["idempotency_key"] not in held]
    for ev in fresh:
        held[ev["idempotency_key"]] = ev
    return len(fresh)


def verify(session: Session, anchors: Sequence[Anchor] = ()) -> VerifyResult:
    """Recompute the chain in seq order, streaming, reporting the first broken event; then hold
    it against its head row, the checkpoints given (their signatures already checked) and the
    decisions table. A link can only show what was cut out of the middle: the rest need these."""
    n_events = n_problems = 0
    first: tuple[int, str, str] | None = None
    prev_hash = GENESIS
    marks = _AnchorCheck(anchors)
    for record in _stream(session):
        n_events += 1
        problem = _check(record, prev_hash)
        if problem is not None:
            n_problems += 1
            first = first or (record["seq"], record["event_id"], problem)
        prev_hash = record["hash"]
        marks.add(prev_hash)
    findings = [*head_findings(chain_head(session), n_events, prev_hash), *marks.findings()]
    findings += decision_findings(session)
    return VerifyResult(
        ok=first is None and not findings,
        n_events=n_events,
        first_bad_seq=first[0] if first else None,
        first_bad_event_id=first[1] if first else None,
        problem=first[2] if first else None,
        n_problems=n_problems,
        head_hash=prev_hash if n_events else None,
        findings=tuple(findings),
        n_decisions=session.scalar(select(func.count()).select_from(Decision)) or 0,
        n_checkpoints=len(anchors),
    )


def records(session: Session, transaction_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Stored events as the export writes them (seq, content, hashes), in chain order."""
    return _stream(session, transaction_id)


def chain_hashes(session: Session) -> Iterator[tuple[int, str, str]]:
    """`(seq, prev_hash, hash)` of every event in chain order, streaming: what checkpoints read."""
    stmt = select(AuditEvent.seq, AuditEvent.prev_hash, AuditEvent.hash).order_by(AuditEvent.seq)
    for row in session.execute(stmt.execution_options(yield_per=_STREAM_BATCH)):
        yield row.seq, row.prev_hash, row.hash


def chain_head(session: Session) -> tuple[str, int] | None:
    """The head row's `(hash, n_events)`: where appends say the chain ends (None: no row)."""
    row = session.execute(
        select(AuditChainHead.hash, AuditChainHead.n_events).where(AuditChainHead.id == _HEAD)
    ).first()
    return None if row is None else (row.hash, row.n_events)


def head_findings(stored: tuple[str, int] | None, n_events: int, last_hash: str) -> list[Finding]:
    """The head row against the chain read: a tail cut off without moving it shows here."""
    if stored is None:
        return [Finding("head", "the chain has no head row: the store's schema is not migrated")]
    found = []
    if stored[0] != last_hash:
        found.append(
            Finding(
                "head",
                f"the head row says the chain ends in {stored[0]}, its last event is "
                f"{last_hash}: events were deleted from the end, or the head row was moved",
            )
        )
    if stored[1] != n_events:
        found.append(
            Finding("head", f"the head row counts {stored[1]:,} events, the chain has {n_events:,}")
        )
    return found


def decision_findings(session: Session) -> list[Finding]:
    """Each decision's final state against its last decision event (`DECISION_EVENTS`), and
    each final review against the routing that sent it to review; found in the database.

    The events' content is checked by the chain, so this only trusts what the chain vouches for.
    Events of transactions without a decision row are not reported (alerts, promotions)."""
    mismatched = [_decision_finding(row) for row in session.execute(_mismatched_decisions())]
    unrouted = [
        Finding(
            "decision",
            f"review event seq {row.seq} for {row.transaction_id} follows no routed_to_review "
            "event: a final review of a case the router never sent to review",
        )
        for row in session.execute(_unrouted_reviews())
    ]
    return _capped(mismatched) + _capped(unrouted)


def _mismatched_decisions() -> Any:
    """Decisions whose final decision, reviewer or rationale is not what their last decision
    event set (or that have none), in one query."""
    last = (
        select(AuditEvent.transaction_id, func.max(AuditEvent.seq).label("seq"))
        .where(AuditEvent.event_type.in_(DECISION_EVENTS))
        .group_by(AuditEvent.transaction_id)
        .subquery()
    )
    ev = aliased(AuditEvent)
    reviewed = ev.event_type == REVIEWED
    reviewer = case((reviewed, ev.actor), else_=None)
    rationale = case((reviewed, ev.review_rationale), else_=None)
    return (
        select(
            Decision.transaction_id,
            Decision.final_decision,
            Decision.reviewer,
            ev.seq,
            ev.decision,
            reviewer.label("event_reviewer"),
        )
        .outerjoin(last, last.c.transaction_id == Decision.transaction_id)
        .outerjoin(ev, ev.seq == last.c.seq)
        .where(
            or_(
                ev.seq.is_(None),
                Decision.final_decision.is_distinct_from(ev.decision),
                Decision.reviewer.is_distinct_from(reviewer),
                Decision.review_rationale.is_distinct_from(rationale),
            )
        )
        .order_by(Decision.transaction_id)
    )


def _unrouted_reviews() -> Any:
    review, routed = aliased(AuditEvent), aliased(AuditEvent)
    was_routed = exists().where(
        and_(
            routed.transaction_id == review.transaction_id,
            routed.event_type == ROUTED,
            routed.seq < review.seq,
        )
    )
    return (
        select(review.seq, review.transaction_id)
        .where(review.event_type == REVIEWED, review.transaction_id.is_not(None), ~was_routed)
        .order_by(review.seq)
    )


def _decision_finding(row: Row[Any]) -> Finding:
    said = f"final {row.final_decision} (reviewer {row.reviewer})"
    if row.seq is None:
        return Finding("decision", f"decision {row.transaction_id} says {said}: no event says so")
    return Finding(
        "decision",
        f"decision {row.transaction_id} says {said}, its last decision event (seq {row.seq}) "
        f"says final {row.decision} (reviewer {row.event_reviewer}): changed without an event",
    )


def _capped(findings: list[Finding]) -> list[Finding]:
    if len(findings) <= _LISTED:
        return findings
    rest = len(findings) - _LISTED
    return [*findings[:_LISTED], Finding(findings[0].kind, f"... and {rest:,} more like these")]


class _AnchorCheck:
    """Checkpoints against the chain as it streams by: at each checkpoint's length, the event's
    hash and the Merkle root so far must be the signed ones; a checkpoint longer than the chain
    means its tail was cut off (and the head row moved back, or the head would say so)."""

    def __init__(self, anchors: Sequence[Anchor]) -> None:
        self._due = sorted(anchors, key=lambda a: a.n_events, reverse=True)  # next one last
        self._tree = merkle.RootBuilder() if anchors else None
        self._found: list[Finding] = []
        self._check_due(GENESIS)  # checkpoints of the empty chain

    def add(self, event_hash: str) -> None:
        if self._tree is None:
            return
        self._tree.add(merkle.leaf_hash(bytes.fromhex(event_hash)))
        self._check_due(event_hash)

    def findings(self) -> list[Finding]:
        size = self._tree.size if self._tree else 0
        cut = [
            Finding(
                "truncated",
                f"checkpoint {a.name} signed {a.n_events:,} events, the chain has {size:,}: "
                "events were deleted from its end",
            )
            for a in reversed(self._due)
        ]
        return self._found + cut

    def _check_due(self, event_hash: str) -> None:
        size = self._tree.size if self._tree else 0
        while self._due and self._due[-1].n_events == size:
            anchor = self._due.pop()
            root = self._tree.root().hex() if self._tree else merkle.EMPTY_ROOT.hex()
            if event_hash != anchor.head_hash or root != anchor.merkle_root:
                self._found.append(
                    Finding(
                        "rewritten",
                        f"event {size:,} of the chain is not the one checkpoint {anchor.name} "
                        f"signed (hash {event_hash}, signed {anchor.head_hash}; Merkle root "
                        f"{'as signed' if root == anchor.merkle_root else 'differs'}): the "
                        "chain was rewritten at or before it",
                    )
                )


def export_jsonl(
    session: Session,
    path: Path,
    transaction_id: str | None = None,
    checkpoints: Iterable[Mapping[str, Any]] = (),
) -> int:
    """Events in chain order, one JSON object a line (with seq and hashes), then each signed
    checkpoint given as `{"checkpoint": {...}}`, a copy out of the database's reach; returns
    how many events."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    n = 0
    with partial.open("w", encoding="utf-8") as out:
        for record in _stream(session, transaction_id):
            out.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            n += 1
        for checkpoint in checkpoints:
            out.write(json.dumps({"checkpoint": checkpoint}, ensure_ascii=False) + "\n")
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


def _prepared(ev: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The event's stored form and the canonical text its hash is taken of."""
    row = _stored_form(ev)
    return row, stored_canonical({**row, "timestamp": row["timestamp"].isoformat()})


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
