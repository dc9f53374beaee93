"""The decision store: transactions history, decisions, review outbox, labels, audit, quarantine.

SQLAlchemy 2 on SQLite by default and PostgreSQL in production; the schema is owned by Alembic
(`fraudloop/migrations`). Every write is idempotent: a retry never creates a second row.
"""

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson
import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    make_url,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from fraudloop.bulk import insert_rows
from fraudloop.errors import ServiceUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class Base(DeclarativeBase):
    pass


class TransactionRow(Base):
    """Feature history: only what features need, no sensitive fields."""

    __tablename__ = "transactions"
    transaction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tx_datetime: Mapped[datetime] = mapped_column(DateTime)
    customer_id: Mapped[str] = mapped_column(String(64))
    terminal_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[float] = mapped_column(Float)
    __table_args__ = (
        Index("ix_transactions_customer_time", "customer_id", "tx_datetime"),
        Index("ix_transactions_terminal_time", "terminal_id", "tx_datetime"),
        Index("ix_transactions_time", "tx_datetime"),
    )


class Decision(Base):
    """Exactly one per transaction: the model's recommendation and the final decision, apart."""

    __tablename__ = "decisions"
    transaction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    decided_at: Mapped[datetime] = mapped_column(DateTime)
    tx_datetime: Mapped[datetime] = mapped_column(DateTime, index=True)
    amount: Mapped[float] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float)
    route: Mapped[str] = mapped_column(String(32), index=True)
    recommendation: Mapped[str] = mapped_column(String(16))
    final_decision: Mapped[str | None] = mapped_column(String(32))
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    model_name: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(32))
    policy_version: Mapped[str] = mapped_column(String(32))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    input_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    reviewer: Mapped[str | None] = mapped_column(String(128))
    review_rationale: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime)


class ReviewTask(Base):
    """The outbox of review work: written with the decision, delivered to Label Studio later."""

    __tablename__ = "review_tasks"
    case_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(64), index=True)
    queue: Mapped[str] = mapped_column(String(32))
    priority: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sla_due_at: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    ls_project_id: Mapped[int | None] = mapped_column(Integer)
    ls_task_id: Mapped[int | None] = mapped_column(Integer)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    # review tiers (labeling.review): origin, who decided how, why it left its queue (typed code
    # and text), and the change Label Studio still has to be told about (None when in step)
    parent_case_id: Mapped[str | None] = mapped_column(String(96))
    decision: Mapped[str | None] = mapped_column(String(32))
    reviewer: Mapped[str | None] = mapped_column(String(128))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime)
    annotation_id: Mapped[int | None] = mapped_column(Integer)
    status_reason: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[str | None] = mapped_column(String(32))
    ls_patch: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # active learning (pipeline.selection): why a pick beyond the router, by which strategy, and
    # its chance to be drawn (1 for a deterministic pick), which the exploration estimate weights by
    selection_reason: Mapped[str | None] = mapped_column(Text)
    strategy: Mapped[str | None] = mapped_column(String(16))
    propensity: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (
        Index("ix_review_tasks_queue_status", "queue", "status"),
        Index("ix_review_tasks_queue_created", "queue", "created_at"),
    )


class Reviewer(Base):
    """A Label Studio user fraudloop created, with the role that decides which tiers it may work."""

    __tablename__ = "reviewers"
    email: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    ls_user_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Label(Base):
    """A label and the moment it became known: a reviewer's at once, a chargeback days later."""

    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(64), index=True)
    is_fraud: Mapped[int] = mapped_column(Integer)
    known_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    source: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(128))
    __table_args__ = (UniqueConstraint("transaction_id", "source", name="uq_labels_tx_source"),)


class AuditEvent(Base):
    """Append-only record of every decision change, promotion and alert (SPEC audit fields).

    Hash-chained in `seq` order (see `fraudloop.audit`); `AuditChainHead` keeps two writers from
    forking the chain from the same event, whatever the locking.
    """

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))  # uuid5 of the unique idempotency_key
    idempotency_key: Mapped[str] = mapped_column(String(256), unique=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime)
    event_type: Mapped[str] = mapped_column(String(32))
    transaction_id: Mapped[str | None] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    input_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model_version: Mapped[str | None] = mapped_column(String(32))
    model_confidence: Mapped[float | None] = mapped_column(Float)
    explanation_tokens: Mapped[list[str] | None] = mapped_column(JSON)
    decision: Mapped[str | None] = mapped_column(String(32))
    review_rationale: Mapped[str | None] = mapped_column(Text)
    sla_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The hash of the chain's last event, one row: an append moves it from the head it read to
    its own last event, or fails (a writer that read a stale head would fork the chain).

    It replaced a unique index on `audit_events.prev_hash` that guarded the same: random keys,
    that index dirtied most of its pages on every batch, more as the store grew.
    """

    __tablename__ = "audit_chain_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    n_events: Mapped[int] = mapped_column(Integer, server_default="0")  # events up to `hash`


class Quarantine(Base):
    """Rejected input kept with its reason (sensitive fields already redacted)."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime)
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(64))
    problem: Mapped[str] = mapped_column(Text)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    # one row per distinct rejected input (record, field and problem)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (UniqueConstraint("content_hash", name="uq_quarantine_content_hash"),)


class IntakeFile(Base):
    """A file taken from a landing folder (`fraudloop.intake`), known by its content hash so
    that the same file dropped twice is read once. `rows_done` is its watermark, moved with each
    chunk in the chunk's own transaction: a run that crashed halfway is finished from there."""

    __tablename__ = "intake_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # transactions | chargebacks
    name: Mapped[str] = mapped_column(String(512))  # relative to its landing folder
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # processing | done | duplicate | rejected
    rows: Mapped[int] = mapped_column(Integer)
    rows_done: Mapped[int] = mapped_column(Integer)
    taken_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    note: Mapped[str | None] = mapped_column(Text)  # why rejected, or the file it repeats
    __table_args__ = (
        UniqueConstraint("kind", "name", "sha256", name="uq_intake_files_kind_name_sha256"),
        Index("ix_intake_files_kind_sha256", "kind", "sha256"),
    )


class ChargebackRow(Base):
    """A chargeback as it arrived (landing file or `POST /v1/chargebacks`), once per
    transaction; the label it gives is in `labels` (source "chargeback")."""

    __tablename__ = "chargebacks"
    transaction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    chargeback_date: Mapped[datetime] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    source: Mapped[str] = mapped_column(String(512))  # "api" or the landing file's name
    actor: Mapped[str] = mapped_column(String(128))


class AlertStateRow(Base):
    """One sustained alert rule for one scope between evaluations (`monitoring.alert_rules`),
    and its outbox: `unsent` holds the alerts and resolutions some sink has not taken yet, each
    with the sinks that have (`monitoring.alerting.deliver_alerts`)."""

    __tablename__ = "alert_state"
    rule: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    evaluated_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_value: Mapped[float | None] = mapped_column(Float)
    first_breach_at: Mapped[datetime | None] = mapped_column(DateTime)
    active_since: Mapped[datetime | None] = mapped_column(DateTime)
    last_fired_at: Mapped[datetime | None] = mapped_column(DateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    unsent: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class SyncWatermark(Base):
    """How far the label sync has read one Label Studio project, on the server's clock: when
    its last pass began, or the newest change it read (`labeling.reconcile.sync_reviews`)."""

    __tablename__ = "label_sync_watermarks"
    source: Mapped[str] = mapped_column(String(256), primary_key=True)  # server URL + project
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    synced_at: Mapped[datetime] = mapped_column(DateTime)


def json_text(value: Any) -> str:
    """JSON columns as stored: orjson (C) instead of `json.dumps`, the batch path's hot spot.

    NaN becomes null (valid JSON on both databases); numpy scalars, datetimes and int keys are
    written as `json.dumps` with a default would write them. What orjson refuses that JSON can
    hold (an integer beyond 64 bits, as a quarantined record may carry) goes through `json`.
    """
    try:
        return orjson.dumps(value, default=json_default, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=json_default, allow_nan=False)


# how long a SQLite writer waits for another process's write (the API's workers, a flow run)
# before "database is locked" (Python's default, 5 s, a large scoring batch's write can outlast)
SQLITE_BUSY_SECONDS = 60


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    sqlite = url.startswith("sqlite")
    connect_args = {"timeout": SQLITE_BUSY_SECONDS} if sqlite else {}
    engine = create_engine(url, future=True, json_serializer=json_text, connect_args=connect_args)
    if sqlite:
        event.listen(engine, "connect", _sqlite_wal)
    return engine


def _sqlite_wal(dbapi_connection: Any, _: Any) -> None:
    """Write-ahead log: one fsync per commit instead of the rollback journal's several, and
    readers (reports, the API's reads) no longer wait for the writer. `synchronous=FULL` keeps every commit durable. A 64 MB
    page cache (default 2 MB) keeps the random-key indexes (ids, hashes) of a busy store in
    memory."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def json_default(value: Any) -> Any:
    """What JSON makes of values it has no type for (audit hashing uses the same rule)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars orjson does not take natively
        return value.item()
    raise TypeError(f"{value!r} ({type(value).__name__}) is not JSON")


def migrate(url: str) -> None:
    """Bring the schema to the latest Alembic revision; an unreachable database is one line."""
    from alembic import command

    try:
        command.upgrade(alembic_config(url), "head")
    except OperationalError as exc:
        raise ServiceUnavailable(unreachable(url, exc)) from exc


def unreachable(url: str, exc: BaseException) -> str:
    """What to tell a user whose database does not answer (the URL without its password)."""
    where = make_url(url).render_as_string(hide_password=True)
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    return f"database {where} is unavailable ({reason}); start it or set FRAUDLOOP_DB_URL"


def alembic_config(url: str) -> "Config":
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def insert_ignore(session: Session, model: type[Base], rows: Sequence[dict[str, Any]]) -> int:
    """Insert rows, skipping any that collide on a unique key; returns how many were new.

    Rows go in primary-key order when they carry their key, so concurrent writers with
    overlapping batches wait on each other in one order and never deadlock.
    """
    if not rows:
        return 0
    table = cast(Table, model.__table__)
    key = list(table.primary_key.columns)[0]
    if key.name in rows[0]:
        rows = sorted(rows, key=lambda row: row[key.name])
    return insert_rows(session, table, rows, skip_conflicts=True)


def one_of(column: Any, name: str, dialect: str) -> ColumnElement[bool]:
    """`column` is one of the ids bound to `name`. PostgreSQL takes the list as one array: a
    batch binds thousands of ids, and an IN list of a parameter each took longer to render and
    parse than to run. SQLite plans the expanded list better than a JSON array read with
    `json_each` (`benchmarks/RESULTS.md`)."""
    if dialect == "postgresql":
        return cast(ColumnElement[bool], column == any_(bindparam(name, type_=ARRAY(String))))
    return cast(ColumnElement[bool], column.in_(bindparam(name, expanding=True)))


def read_frame(session: Session, stmt: Any) -> pd.DataFrame:
    """Rows as a frame, straight from the result: `pd.read_sql`'s overhead shows online."""
    result = session.connection().execute(stmt)  # Core: `select(Entity)` gives its columns
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def count_by(session: Session, column: Any) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column))
    return {str(k): int(v) for k, v in rows}


def set_status(session: Session, case_ids: Iterable[str], **values: Any) -> None:
    """A plain UPDATE: syncing the session would scan every loaded task per call (quadratic)."""
    session.execute(
        update(ReviewTask)
        .where(ReviewTask.case_id.in_(list(case_ids)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


@cache
def engine_for(url: str) -> Engine:
    """One engine per URL per process (connection pooling)."""
    return make_engine(url)


@cache
def write_turn(url: str) -> AbstractContextManager[Any]:
    """Hold while writing from a multi-threaded process (the API). SQLite has one writer: the
    threads take turns here instead of sleeping in SQLite's busy handler, which backs off in
    steps of many milliseconds. PostgreSQL needs no turn."""
    return threading.Lock() if url.startswith("sqlite") else nullcontext()


@contextmanager
def writing(url: str) -> Iterator[Session]:
    """A write transaction from a multi-threaded process, in its turn (see `write_turn`)."""
    with write_turn(url), open_session(url) as session, session.begin():
        yield session


def open_session(url: str) -> Session:
    return Session(engine_for(url), expire_on_commit=False)
