"""The decision store on SQLite and PostgreSQL: idempotent writes, one decision per transaction."""

import math
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Table, delete, func, insert, inspect, select
from sqlalchemy.orm import Session

from fraudloop import audit, decisions, labels
from fraudloop.bulk import COPY_MIN_ROWS, insert_rows
from fraudloop.policy import load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import (
    SQLITE_BUSY_SECONDS,
    AuditChainHead,
    AuditEvent,
    Base,
    Decision,
    Label,
    Quarantine,
    ReviewTask,
    TransactionRow,
    alembic_config,
    insert_ignore,
    make_engine,
)
from labeling.review.answers import Answer, finalize
from pipeline.route import ModelInfo, build_decisions

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
NOW = datetime(2026, 3, 1, 12, 0)


def _tx(n: int) -> pd.DataFrame:
    records = [
        {
            "transaction_id": f"tx-{i}",
            "tx_datetime": NOW - timedelta(minutes=n - i),
            "customer_id": f"c{i % 3}",
            "terminal_id": f"t{i % 2}",
            "amount": 10.0 * (i + 1),
            "card_number": "4000000000001234",
            "email": "a@b.com",
            "ip_address": "10.1.2.3",
        }
        for i in range(n)
    ]
    frame, rejected = validate_batch(records)
    assert not rejected
    return frame


def _scores(values: list[float]) -> pd.DataFrame:
    reasons = [{"feature": "amount", "value": 1.0, "contribution": 0.5, "text": "big amount"}] * 3
    return pd.DataFrame(
        {
            "score": values,
            "confidence": [max(v, 1 - v) for v in values],
            "reasons": [reasons] * len(values),
        }
    )


def test_decisions_are_idempotent_and_audited(db_url: str) -> None:
    tx = _tx(4)
    batch = build_decisions(
        tx, _scores([0.1, 0.8, 0.9, 0.99]), POLICY, ModelInfo("fraud-detector", "1"), NOW
    )
    engine = make_engine(db_url)
    for _ in range(2):  # a retry must not create a second decision, task or event
        with Session(engine) as s, s.begin():
            decisions.save(s, batch)
            labels.add_transactions(s, tx)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 4
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 4
        routes = dict(s.execute(select(Decision.transaction_id, Decision.route)).all())
        assert routes == {
            "tx-0": "auto_allow",
            "tx-1": "async_review",
            "tx-2": "sync_review",
            "tx-3": "auto_block",
        }
        assert s.scalar(select(func.count()).select_from(ReviewTask)) == 2
        snapshot = s.get(Decision, "tx-1").input_snapshot
        assert snapshot["card"] == "**** 1234" and "card_number" not in snapshot


def test_review_applied_once_with_label_and_sla(db_url: str) -> None:
    tx = _tx(2)
    batch = build_decisions(tx, _scores([0.8, 0.9]), POLICY, ModelInfo("m", "1"), NOW)
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        decisions.save(s, batch)
    answer = Answer(
        case_id="tx-0:async_review",
        annotation_id=7,
        updated_at="2026-03-01T12:10:00Z",
        decision="human_approve",
        reviewer="ana@fraudloop.local",
        rationale="known customer",
    )
    later = NOW + timedelta(minutes=10)
    with Session(engine) as s, s.begin():
        task = s.get(ReviewTask, answer.case_id)
        assert finalize(s, task, answer, POLICY, later) is True
        assert finalize(s, task, answer, POLICY, later) is False
    with Session(engine) as s:
        d = s.get(Decision, "tx-0")
        assert (d.final_decision, d.recommendation, d.reviewer) == (
            "human_approve",
            "reject",
            "ana@fraudloop.local",
        )
        events = audit.trail(s, "tx-0")
        assert list(events["event_type"]) == ["routed_to_review", "review"]
        assert events.iloc[-1]["sla_metadata"]["actual_minutes"] == 10.0
        known = labels.labels(s)
        assert known.to_dict("records")[0]["is_fraud"] == 0
        assert labels.labels(s, known_before=later).empty


def test_quarantine_keeps_redacted_record(db_url: str) -> None:
    _, rejected = validate_batch(
        [{"transaction_id": "x", "amount": -1, "card_number": "4111111111111111"}]
    )
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        decisions.quarantine(s, rejected, NOW, POLICY.limits.quarantine_record_bytes)
    with Session(engine) as s:
        row = s.scalars(select(Quarantine)).one()
        assert row.transaction_id == "x" and row.field
        assert "4111111111111111" not in str(row.record)


_T = datetime(2026, 3, 1, 12, 0)
_PLUS_ONE = timezone(timedelta(hours=1))  # an aware datetime goes in as SQLAlchemy puts it
_REASONS = [
    {"feature": "amount", "value": np.float64(1.5), "contribution": math.nan, "text": "中 ≥"}
]
_SNAPSHOT = {"n": (1, 2), 3: None, "at": _T, "deep": {"x": [1.0, None, np.int64(7)]}}
_ROWS: dict[type[Base], list[dict[str, Any]]] = {
    Decision: [
        {
            "transaction_id": tx,
            "decided_at": _T.replace(microsecond=micro),
            "tx_datetime": datetime(999, 1, 2, 3, 4, 5, micro),
            "amount": 10.25,
            "score": score,
            "confidence": None if i else 0.5,
            "route": "auto_allow",
            "recommendation": "approve",
            "final_decision": None if i else "auto_approve",
            "fallback": bool(i),
            "model_name": None,
            "model_version": "3",
            "policy_version": "p1",
            "reasons": _REASONS if i else [],
            "input_snapshot": _SNAPSHOT if i else {},
        }
        for i, (tx, micro, score) in enumerate(
            [("tx-b", 0, math.nan), ("tx-a", 123456, np.float64(0.75)), ("tx-c", 1, None)]
        )
    ],
    ReviewTask: [  # status and attempts left to their defaults
        {
            "case_id": f"tx-{i}:async_review",
            "transaction_id": f"tx-{i}",
            "queue": "async_review",
            "priority": 1.5 * i,
            "created_at": _T,
            "sla_due_at": _T + timedelta(minutes=90, microseconds=i),
            "ls_patch": None if i else {"a": 1},
        }
        for i in range(3)
    ],
    Label: [
        {"transaction_id": f"tx-{i}", "is_fraud": i % 2, "known_at": _T, "source": "review"}
        for i in range(3)
    ],
    Quarantine: [
        {
            "received_at": _T,
            "transaction_id": None,
            "field": "amount",
            "problem": "négatif",
            "record": {"amount": -1, "x": math.nan},
        }
    ],
    TransactionRow: [
        {
            "transaction_id": f"tx-{i}",
            "tx_datetime": _T + timedelta(microseconds=i) if i else _T.replace(tzinfo=_PLUS_ONE),
            "customer_id": "c1",
            "terminal_id": "t1",
            "amount": 0.1 * i,
        }
        for i in range(3)
    ],
}


def _stored(s: Session, model: type[Base]) -> tuple[list[Any], list[Any]]:
    """The rows as the database holds them (text on PostgreSQL) and as the ORM reads them,
    without autoincrement ids, NaN made comparable."""
    table = cast(Table, model.__table__)
    columns = [c for c in table.columns if not (c.primary_key and c.autoincrement is True)]
    names = ", ".join(f'"{c.name}"' for c in columns)
    order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    raw_sql = f"SELECT {names} FROM {table.name} ORDER BY {order}"
    if s.get_bind().dialect.name == "postgresql":  # text: json as stored, NaN, timestamp digits
        raw_sql = f"SELECT ROW({names})::text FROM {table.name} ORDER BY {order}"
    raw = [tuple(row) for row in s.connection().exec_driver_sql(raw_sql)]
    orm = [
        tuple(_comparable(getattr(obj, c.key)) for c in columns)
        for obj in s.scalars(select(model).order_by(*table.primary_key.columns))
    ]
    s.expunge_all()
    return raw, orm


def _comparable(value: Any) -> Any:
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def _many(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """At least n rows: copies of these under new keys."""
    copies = -(-n // len(rows))
    return [
        {k: f"{v}#{i}" if k in ("transaction_id", "case_id") and v else v for k, v in row.items()}
        for i in range(copies)
        for row in rows
    ]


@pytest.mark.parametrize("skip_conflicts", [True, False], ids=["insert_ignore", "insert_rows"])
@pytest.mark.parametrize("n", [1, COPY_MIN_ROWS], ids=["few", "copy"])
@pytest.mark.parametrize("model", list(_ROWS), ids=lambda m: m.__tablename__)
def test_bulk_rows_are_stored_as_sqlalchemy_stores_them(
    db_url: str, model: type[Base], n: int, skip_conflicts: bool
) -> None:
    """Stored bytes and ORM values of the bulk path (executemany, or COPY for many rows on
    PostgreSQL: through a scratch table when conflicts are skipped, straight in when not) equal
    a plain Core insert's: types, NaN, None, nested JSON, microseconds, defaults."""
    table = cast(Table, model.__table__)
    rows = _many(_ROWS[model], n)
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        s.execute(insert(table), rows)
        reference = _stored(s, model)
        s.execute(delete(table))
        if skip_conflicts:
            assert insert_ignore(s, model, rows) == len(rows)
        else:
            assert insert_rows(s, table, rows) == len(rows)
        assert _stored(s, model) == reference


@pytest.mark.parametrize("n", [5, 3 * COPY_MIN_ROWS], ids=["few", "copy"])
@pytest.mark.parametrize("model", [Label, TransactionRow], ids=["unique", "key"])
def test_insert_ignore_counts_only_new_rows(db_url: str, model: type[Base], n: int) -> None:
    engine = make_engine(db_url)
    rows = _many(_ROWS[model], n)[:n]
    third = n // 3
    with Session(engine) as s, s.begin():
        assert insert_ignore(s, model, rows[: 2 * third]) == 2 * third
        assert insert_ignore(s, model, rows[: 2 * third]) == 0  # a retry
        overlap = rows[third:] + rows[-1:]  # stored, new, and one row twice
        assert insert_ignore(s, model, overlap) == n - 2 * third
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(model)) == n


@pytest.mark.parametrize("n", [3, COPY_MIN_ROWS], ids=["few", "copy"])
def test_bulk_rows_belong_to_the_callers_transaction(db_url: str, n: int) -> None:
    engine = make_engine(db_url)
    with Session(engine) as s:
        s.begin()
        rows = _many(_ROWS[TransactionRow], n)
        assert insert_ignore(s, TransactionRow, rows) == len(rows)
        s.rollback()
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(TransactionRow)) == 0


def test_migrations_build_the_models_schema_and_step_down_and_up(db_url: str) -> None:
    """The audit migrations go down and up again with a stored chain (its head is kept), and the
    schema at head is the models'."""
    with Session(make_engine(db_url)) as s, s.begin():
        audit.append(
            s, [audit.event(f"k{i}", "decision", "model", datetime(2026, 1, 1)) for i in range(3)]
        )
    head = _verified(db_url).head_hash
    cfg = alembic_config(db_url)
    engine = make_engine(db_url)

    def unique_columns() -> list[list[str]]:
        constraints = inspect(engine).get_unique_constraints("audit_events")
        return sorted(u["column_names"] for u in constraints)

    assert unique_columns() == [["idempotency_key"]]
    command.downgrade(cfg, "0004")  # the chain's head back to a unique prev_hash
    assert unique_columns() == [["idempotency_key"], ["prev_hash"]]
    assert not inspect(engine).has_table("audit_chain_head")
    command.downgrade(cfg, "0003")  # event_id unique again
    assert unique_columns() == [["event_id"], ["idempotency_key"], ["prev_hash"]]
    command.upgrade(cfg, "head")
    assert unique_columns() == [["idempotency_key"]]
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.scalar(select(AuditChainHead.hash)) == head  # seeded from the last event
    with Session(engine) as s, s.begin():
        assert audit.append(s, [audit.event("k3", "decision", "model", datetime(2026, 1, 2))]) == 1
    assert _verified(db_url).ok


def _verified(url: str) -> audit.VerifyResult:
    with Session(make_engine(url)) as s:
        return audit.verify(s)


def test_a_sqlite_writer_waits_for_another_processes_write(tmp_path: Any) -> None:
    """A second process writing (an API worker, a flow run) makes this one wait, not fail."""
    with make_engine(f"sqlite:///{tmp_path / 'store.db'}").connect() as conn:
        waits_ms = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert waits_ms == SQLITE_BUSY_SECONDS * 1000
