"""Tampering with the audit trail as an attacker with DDL rights would: first drop the triggers
that make `audit_events` append-only (migration 0010), then plain SQL."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from fraudloop.storage import make_engine

_DROP_TRIGGERS = {
    "sqlite": (
        "DROP TRIGGER IF EXISTS audit_events_no_update",
        "DROP TRIGGER IF EXISTS audit_events_no_delete",
    ),
    "postgresql": (
        "DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events",
        "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    ),
}


@contextmanager
def attacker(url: str) -> Iterator[Connection]:
    """A transaction on the store with the append-only triggers gone."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for statement in _DROP_TRIGGERS[conn.dialect.name]:
                conn.execute(text(statement))
            yield conn
    finally:
        engine.dispose()


def tamper(url: str, *statements: str) -> None:
    with attacker(url) as conn:
        for statement in statements:
            conn.execute(text(statement))
