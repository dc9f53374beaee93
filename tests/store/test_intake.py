"""Intake on SQLite and PostgreSQL: each landed file read once, from its watermark; bad rows and
bad files quarantined with their reason; chargebacks once each, unknown ones quarantined.

The intake flows' own task bodies run here (`.fn`: no Prefect engine); the scheduled runs
against a real Prefect server are in tests/integration/test_scheduler.py.
"""

import csv
import io
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.auth import hash_key
from flows.intake import chargeback_file, score_file, take_files
from flows.runtime import Runtime
from fraudloop import intake
from fraudloop.schema import Rejection
from fraudloop.settings import ApiKey, Settings
from fraudloop.storage import (
    AuditEvent,
    ChargebackRow,
    Decision,
    IntakeFile,
    Label,
    Quarantine,
    migrate,
    open_session,
)
from pipeline.decide import score_batch

NOW = datetime(2026, 3, 1, 12, 0)
SETTLED = 60.0  # seconds since a landed file last changed: past the policy's settle time
CHUNK = 3


@pytest.fixture
def rt(db_url: str, tmp_path: Path) -> Runtime:
    return Runtime(Settings(home=tmp_path, db_url=db_url, score_chunk_rows=CHUNK))


def _tx(first: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"tx-{i}",
            "tx_datetime": (NOW - timedelta(hours=1, minutes=-i)).isoformat(),
            "customer_id": f"c{i % 3}",
            "terminal_id": f"t{i % 2}",
            "amount": 20.0 + i,
        }
        for i in range(first, first + n)
    ]


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _land(path: Path, text: str, age: float = SETTLED) -> Path:
    """Write a file as a producer would, last changed `age` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    _age(path, age)
    return path


def _age(path: Path, age: float) -> None:
    then = time.time() - age
    os.utime(path, (then, then))


def _intake(rt: Runtime) -> dict[str, tuple[int, int]]:
    """One scoring run over the landing folder: {file: (scored, quarantined)}."""
    done = {}
    for claim in take_files.fn(rt, intake.TRANSACTIONS, NOW):
        result = score_file.fn(rt, claim, None, NOW)  # no champion: the fallback rules decide
        done[claim.name] = (result.scored, result.rejected)
    return done


def _count(rt: Runtime, table: Any) -> int:
    with open_session(rt.db_url) as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def _files(rt: Runtime) -> dict[str, tuple[str, int]]:
    with open_session(rt.db_url) as s:
        rows = s.execute(select(IntakeFile.name, IntakeFile.status, IntakeFile.rows_done))
        return {name: (status, done) for name, status, done in rows}


def test_the_same_file_dropped_twice_is_scored_once(rt: Runtime) -> None:
    folder, text = rt.settings.transactions_landing, _csv(_tx(0, 5))
    _land(folder / "a.csv", text)
    assert _intake(rt) == {"a.csv": (5, 0)}
    _land(folder / "a.csv", text, age=SETTLED / 2)  # dropped again: the same name, a new time
    _land(folder / "2026-03-01" / "a-copy.csv", text)  # and under another name
    assert _intake(rt) == {}
    assert _intake(rt) == {}  # known by name, size and time now: not even read again
    assert _count(rt, Decision) == 5
    assert _count(rt, AuditEvent) == 5
    assert _files(rt) == {"a.csv": ("done", 5), "2026-03-01/a-copy.csv": ("duplicate", 0)}


def test_a_half_written_file_waits(rt: Runtime) -> None:
    folder = rt.settings.transactions_landing
    _land(folder / "b.csv.part", _csv(_tx(0, 3)))  # written under a temporary name
    _land(folder / "c.csv", _csv(_tx(10, 2)), age=0)  # just changed: may still be growing
    _land(folder / ".d.csv", _csv(_tx(20, 2)))  # hidden: a producer's scratch file
    assert _intake(rt) == {}
    (folder / "b.csv.part").rename(folder / "b.csv")  # complete: renamed into place
    assert _intake(rt) == {"b.csv": (3, 0)}
    _age(folder / "c.csv", SETTLED)  # untouched since: complete
    assert _intake(rt) == {"c.csv": (2, 0)}
    assert _count(rt, Decision) == 5


def test_a_bad_row_is_quarantined_and_the_rest_scored(rt: Runtime) -> None:
    folder = rt.settings.transactions_landing
    rows = _tx(0, 4)
    rows[1]["amount"] = "a lot"
    _land(folder / "d.csv", _csv(rows))
    lines = [json.dumps(r) for r in _tx(10, 3)]
    lines.insert(1, '{"transaction_id": "tx-cut-off", "amou')
    _land(folder / "e.jsonl", "\n".join(lines) + "\n")
    assert _intake(rt) == {"d.csv": (3, 1), "e.jsonl": (3, 1)}
    with open_session(rt.db_url) as s:
        decided = set(s.scalars(select(Decision.transaction_id)))
        kept = {(q.transaction_id, q.field): q.problem for q in s.scalars(select(Quarantine))}
    assert decided == {"tx-0", "tx-2", "tx-3", "tx-10", "tx-11", "tx-12"}
    assert set(kept) == {("tx-1", "amount"), (None, "<line 2>")}
    assert "valid number" in kept[("tx-1", "amount")]
    assert kept[(None, "<line 2>")].startswith("not JSON")


def test_a_file_outside_the_schema_is_quarantined_whole(rt: Runtime) -> None:
    frame = pd.DataFrame(_tx(0, 3)).assign(
        tx_datetime=lambda f: pd.to_datetime(f["tx_datetime"]), is_fraud=0
    )
    path = rt.settings.transactions_landing / "world.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path)
    _age(path, SETTLED)
    (rt.settings.transactions_landing / "junk.parquet").write_bytes(b"PAR1 but not parquet")
    _age(rt.settings.transactions_landing / "junk.parquet", SETTLED)
    assert _intake(rt) == {}
    assert _count(rt, Decision) == 0
    with open_session(rt.db_url) as s:
        problems = sorted(q.problem for q in s.scalars(select(Quarantine)))
    assert [p.split(":")[0] for p in problems] == [
        "transactions file junk.parquet",
        "transactions file world.parquet",
    ]
    assert "unknown columns is_fraud" in problems[1]
    assert _files(rt) == {"world.parquet": ("rejected", 0), "junk.parquet": ("rejected", 0)}


def test_parquet_in_the_schema_is_scored(rt: Runtime) -> None:
    frame = pd.DataFrame(_tx(0, 4)).assign(tx_datetime=lambda f: pd.to_datetime(f["tx_datetime"]))
    path = rt.settings.transactions_landing / "f.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path)
    _age(path, SETTLED)
    assert _intake(rt) == {"f.parquet": (4, 0)}


def test_a_run_that_crashed_halfway_is_finished_from_its_watermark(rt: Runtime) -> None:
    _land(rt.settings.transactions_landing / "g.csv", _csv(_tx(0, 8)))
    [claim] = take_files.fn(rt, intake.TRANSACTIONS, NOW)
    start, end = next(claim.chunks(CHUNK))
    with open_session(rt.db_url) as s, s.begin():  # the first chunk commits, then the run dies
        intake.advance(s, claim, start, end, NOW)
        records, _ = intake.split(claim.rows[start:end])
        score_batch(s, records, None, rt.policy, NOW)
    assert _files(rt) == {"g.csv": ("processing", CHUNK)}
    assert _intake(rt) == {"g.csv": (8 - CHUNK, 0)}  # the next run scores only the rest
    assert _count(rt, Decision) == 8
    assert _count(rt, AuditEvent) == 8
    assert _files(rt) == {"g.csv": ("done", 8)}
    with open_session(rt.db_url) as s:
        assert s.scalar(select(IntakeFile.note)).startswith(f"resumed from row {CHUNK}")


def test_two_runs_never_take_the_same_chunk(rt: Runtime) -> None:
    _land(rt.settings.transactions_landing / "h.csv", _csv(_tx(0, 6)))
    [first] = take_files.fn(rt, intake.TRANSACTIONS, NOW)
    [second] = take_files.fn(rt, intake.TRANSACTIONS, NOW)  # a run started meanwhile
    assert first.start == second.start == 0
    with open_session(rt.db_url) as s, s.begin():
        intake.advance(s, first, 0, CHUNK, NOW)
        score_batch(s, intake.split(first.rows[:CHUNK])[0], None, rt.policy, NOW)
    with pytest.raises(intake.Taken), open_session(rt.db_url) as s, s.begin():
        intake.advance(s, second, 0, CHUNK, NOW)  # the chunk is the first run's: rolled back
    assert _files(rt) == {"h.csv": ("processing", CHUNK)}
    assert _intake(rt) == {"h.csv": (6 - CHUNK, 0)}
    assert _count(rt, Decision) == 6


def _chargebacks(rt: Runtime, text: str) -> intake.ChargebackResult:
    _land(rt.settings.chargebacks_landing / "cb.csv", text)
    [claim] = take_files.fn(rt, intake.CHARGEBACKS, NOW)
    return chargeback_file.fn(rt, claim, NOW)


def test_a_chargeback_for_an_unknown_transaction_is_quarantined(rt: Runtime) -> None:
    _land(rt.settings.transactions_landing / "i.csv", _csv(_tx(0, 2)))
    _intake(rt)
    result = _chargebacks(
        rt,
        "transaction_id,date,reason\n"
        "tx-0,2026-02-27,10.4 card absent fraud\n"
        "tx-404,2026-02-27,10.4 card absent fraud\n",
    )
    assert (result.recorded, result.repeated) == (1, 0)
    assert [(r.transaction_id, r.problem) for r in result.quarantined] == [
        ("tx-404", intake.UNKNOWN_TRANSACTION)
    ]
    with open_session(rt.db_url) as s:
        label = s.scalars(select(Label)).one()
        assert (label.transaction_id, label.is_fraud, label.source) == ("tx-0", 1, "chargeback")
        assert label.known_at == NOW  # when it arrived: what features may know from then on
        row = s.get(ChargebackRow, "tx-0")
        assert (row.chargeback_date, row.reason) == (
            datetime(2026, 2, 27),
            "10.4 card absent fraud",
        )
        kept = s.scalars(select(Quarantine)).one()
        assert (kept.transaction_id, kept.field) == ("tx-404", "chargeback.transaction_id")
        event = s.scalars(select(AuditEvent).where(AuditEvent.event_type == "chargeback")).one()
        assert event.transaction_id == "tx-0"
        assert event.details["reason"] == "10.4 card absent fraud"
        again = intake.record_chargebacks(
            s,
            [{"transaction_id": "tx-0", "date": "2026-02-28", "reason": "again"}],
            NOW,
            "api",
            "test",
            rt.policy.limits.quarantine_record_bytes,
        )
        assert (again.recorded, again.repeated, again.quarantined) == (0, 1, [])


def test_a_chargeback_dated_after_it_arrived_is_quarantined(rt: Runtime) -> None:
    _land(rt.settings.transactions_landing / "j.csv", _csv(_tx(0, 1)))
    _intake(rt)
    result = _chargebacks(
        rt, f"transaction_id,date,reason\ntx-0,{(NOW + timedelta(days=2)).date()},x\n"
    )
    assert result.recorded == 0
    assert [r.field for r in result.quarantined] == ["chargeback.date"]
    assert _count(rt, Label) == 0


KEY, SCORER_KEY = "chargeback-network-key-0123456789abcdef", "payment-gateway-key-0123456789abcdef"


def test_post_chargebacks_takes_its_own_role_and_quarantines_unknown_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    settings = Settings(
        home=tmp_path,
        db_url=url,
        api_keys=[
            ApiKey(name="network", role="chargebacks", sha256=hash_key(KEY)),
            ApiKey(name="gateway", role="scorer", sha256=hash_key(SCORER_KEY)),
        ],
    )
    rt = Runtime(settings)
    with open_session(url) as s, s.begin():
        score_batch(s, _tx(0, 1), None, rt.policy, NOW)
    client = TestClient(create_app(settings))  # no lifespan: the route needs no model
    body = [
        {"transaction_id": "tx-0", "date": "2026-02-27T10:00:00Z", "reason": "fraud"},
        {"transaction_id": "tx-404", "date": "2026-02-27", "reason": "fraud"},
    ]
    assert client.post("/v1/chargebacks", json=body).status_code == 401
    assert (
        client.post("/v1/chargebacks", json=body, headers={"X-API-Key": SCORER_KEY}).status_code
        == 403
    )
    for recorded, repeated in ((1, 0), (0, 1)):  # a retry changes nothing
        answer = client.post("/v1/chargebacks", json=body, headers={"X-API-Key": KEY})
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert (got["recorded"], got["repeated"]) == (recorded, repeated)
        assert [(q["transaction_id"], q["field"]) for q in got["quarantined"]] == [
            ("tx-404", "chargeback.transaction_id")
        ]
    bad = client.post(
        "/v1/chargebacks",
        json={"transaction_id": "tx-0", "date": "soon"},
        headers={"X-API-Key": KEY},
    )
    assert bad.status_code == 422
    assert {p["field"] for p in bad.json()["detail"]} == {"chargeback.date", "chargeback.reason"}
    with open_session(url) as s:
        assert s.scalars(select(Label.actor)).all() == ["api:network"]
        assert (
            s.scalar(select(func.count()).select_from(Quarantine)) == 2
        )  # tx-404 once, the bad one


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"reason": "card 4111111111111111 disputed"}, "chargeback.reason"),  # personal data
        ({"transaction_id": "tx-0\x00"}, "chargeback.transaction_id"),
        ({"date": "1900-01-01"}, "chargeback.date"),
        ({"amount": 3.0}, "chargeback.amount"),  # not in the schema
    ],
)
def test_a_chargeback_outside_the_schema_is_refused(record: dict[str, Any], field: str) -> None:
    checked = intake.validate_chargeback(
        {"transaction_id": "tx-0", "date": "2026-02-27", "reason": "fraud"} | record
    )
    assert isinstance(checked, Rejection)
    assert [e.field for e in checked.errors] == [field]
