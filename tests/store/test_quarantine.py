"""Quarantine keeps every bad record once, whatever text it holds, and never a huge one whole."""

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fraudloop import decisions
from fraudloop.schema import validate_batch
from fraudloop.storage import Quarantine, make_engine, migrate

NOW = datetime(2026, 3, 1, 12, 0)
LIMIT = 16_384
GOOD: dict[str, Any] = {
    "transaction_id": "t-1",
    "tx_datetime": "2026-03-01T10:00:00",
    "customer_id": "c-1",
    "terminal_id": "term-1",
    "amount": 12.5,
}


def _keep(url: str, records: list[dict[str, Any]]) -> int:
    _, rejected = validate_batch(records)
    assert len(rejected) == len(records)
    with Session(make_engine(url)) as s, s.begin():
        return decisions.quarantine(s, rejected, NOW, LIMIT)


def _rows(url: str) -> list[Quarantine]:
    with Session(make_engine(url)) as s:
        return list(s.scalars(select(Quarantine).order_by(Quarantine.id)))


@pytest.fixture
def store(db_url: str) -> str:
    migrate(db_url)
    return db_url


def test_the_same_bad_record_is_one_row(store: str) -> None:
    bad = {**GOOD, "amount": -1}
    assert [_keep(store, [bad]) for _ in range(3)] == [1, 0, 0]
    assert _keep(store, [{**bad, "amount": -2}]) == 1  # another record is another row
    with Session(make_engine(store)) as s:
        assert s.scalar(select(func.count()).select_from(Quarantine)) == 2


def test_a_huge_bad_record_is_kept_as_an_excerpt(store: str) -> None:
    huge = {**GOOD, "email": "x" * 20_000_000, "amount": "not a number"}
    assert _keep(store, [huge]) == 1
    [row] = _rows(store)
    assert row.record["bytes"] > 20_000_000
    assert len(row.record["excerpt"]) <= LIMIT
    assert row.content_hash is not None and len(row.content_hash) == 64


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({**GOOD, "customer_id": "c\ud800"}, "customer_id"),
        ({**GOOD, "terminal_id": "t\x00"}, "terminal_id"),
        ({**GOOD, "x\ud800": "1"}, "x\\ud800"),
        ({**GOOD, "note": "a\x00\ud800"}, "note"),
    ],
)
def test_text_no_store_takes_is_refused_and_still_quarantined(
    store: str, record: dict[str, Any], field: str
) -> None:
    """A NUL byte or a lone surrogate once gave a 500 (PostgreSQL refuses NUL; no JSON encoder
    takes a surrogate): both databases now refuse the record alike and keep it."""
    assert _keep(store, [record]) == 1
    [row] = _rows(store)
    assert row.field == field
    text = repr(row.record)
    assert "\x00" not in text and "\ud800" not in text
