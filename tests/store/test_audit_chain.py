"""The audit trail is one hash chain: tampering is detected, retries and concurrency keep it whole."""

import json
import random
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from audit_tamper import attacker, tamper
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cli.main import app
from fraudloop import audit, decisions
from fraudloop.policy import load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR, get_settings
from fraudloop.storage import AuditEvent, Decision, ReviewTask, make_engine
from labeling.review.answers import Answer, finalize
from pipeline.route import ModelInfo, build_decisions

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
NOW = datetime(2026, 3, 1, 12, 0)
MODEL = ModelInfo("fraud-detector", "3")


def _tx(n: int) -> pd.DataFrame:
    records = [
        {
            "transaction_id": f"tx-{i:04d}",
            "tx_datetime": NOW - timedelta(minutes=n - i),
            "customer_id": f"c{i % 7}",
            "terminal_id": f"t{i % 5}",
            "amount": 10.0 * (i + 1),
            "card_number": "4000000000001234",
        }
        for i in range(n)
    ]
    frame, rejected = validate_batch(records)
    assert not rejected
    return frame


def _scores(n: int) -> pd.DataFrame:
    reasons = [{"feature": "amount", "value": 1.0, "contribution": 0.5, "text": "big amount"}] * 3
    values = [(i * 0.137) % 1.0 for i in range(n)]  # every route, deterministically
    return pd.DataFrame(
        {
            "score": values,
            "confidence": [max(v, 1 - v) for v in values],
            "reasons": [reasons] * n,
        }
    )


def _events(n: int, prefix: str = "e") -> list[dict]:
    return [
        audit.event(
            f"{prefix}:{i}",
            "decision",
            "model",
            NOW + timedelta(seconds=i, microseconds=7),
            transaction_id=f"tx-{i}",
            input_snapshot={"amount": 10.5 * i, "card": "**** 1234", "nested": {"b": 1, "a": [1]}},
            model_version="3",
            model_confidence=0.9,
            explanation_tokens=["big amount", "new terminal"],
            decision="auto_approve",
            route="auto_allow",
        )
        for i in range(n)
    ]


def _append(url: str, events: list[dict]) -> int:
    with Session(make_engine(url)) as s, s.begin():
        return audit.append(s, events)


def _verify(url: str) -> audit.VerifyResult:
    with Session(make_engine(url)) as s:
        return audit.verify(s)


def _sql(url: str, *statements: str) -> None:
    tamper(url, *statements)  # the append-only triggers dropped first, as by an attacker


def test_chain_verifies_and_retries_add_nothing(db_url: str) -> None:
    assert _verify(db_url) == audit.VerifyResult(ok=True, n_events=0)
    assert _append(db_url, _events(6)) == 6
    head = _verify(db_url).head_hash
    assert _append(db_url, _events(6)) == 0  # a retry of the same batch
    assert _append(db_url, _events(8)) == 2  # overlapping batch: only the new ones, chained on
    dup = _events(1, prefix="dup")
    assert _append(db_url, dup + dup) == 1  # the same key twice in one batch is one event
    result = _verify(db_url)
    assert (result.ok, result.n_events) == (True, 9)
    with Session(make_engine(db_url)) as s:
        rows = s.execute(select(AuditEvent.prev_hash, AuditEvent.hash).order_by(AuditEvent.seq))
        links = list(rows)
    assert links[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(links, links[1:], strict=False))
    assert links[5].hash == head and result.head_hash == links[-1].hash


def _odd_events() -> list[dict]:
    """Values the stored form must settle: aware times, NaN, None, numpy, tuples, int keys."""
    aware = datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    return [
        audit.event(
            f"golden:{i}",
            "decision",
            "model",
            NOW + timedelta(seconds=i, microseconds=7 * i) if i % 3 else aware,
            transaction_id=f"tx-{i}",
            input_snapshot={
                "amount": np.float32(10.5) * i,
                "card": "**** 1234",
                "n": (1, 2),
                3: "int key",
                "name": "Zoë 中",
            },
            model_version="3",
            model_confidence=[0.9, None, float("nan"), np.float64(0.25)][i % 4],
            explanation_tokens=("big amount", "new terminal"),
            decision=None if i % 2 else "auto_approve",
            route="auto_allow",
            score=float("nan"),
        )
        for i in range(8)
    ]


def test_odd_values_hash_as_they_always_did(db_url: str) -> None:
    """The head was computed by the chain code before the bulk insert: same hashed bytes."""
    assert _append(db_url, _odd_events()) == 8
    result = _verify(db_url)
    assert (result.ok, result.head_hash) == (
        True,
        "a6e6df3578f1ccaa3a984cdfafa28a9a163c14be8546e4adecb3f8ed9098d142",
    )


def test_a_large_batch_chains_in_order(db_url: str) -> None:
    events = _events(3000)
    assert _append(db_url, events[:2000]) == 2000
    assert _append(db_url, events) == 1000  # only the new ones, after the stored ones
    assert _append(db_url, events) == 0
    with Session(make_engine(db_url)) as s:
        keys = s.scalars(select(AuditEvent.idempotency_key).order_by(AuditEvent.seq)).all()
    assert keys == [e["idempotency_key"] for e in events]
    assert (_verify(db_url).ok, _verify(db_url).n_events) == (True, 3000)
    _sql(db_url, "UPDATE audit_events SET review_rationale = 'x' WHERE seq = 2500")
    assert (_verify(db_url).first_bad_seq, _verify(db_url).problem) == (2500, "edited")


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_events SET decision = 'auto_reject' WHERE seq = 3",
        "UPDATE audit_events SET model_confidence = 0.91 WHERE seq = 3",
        "UPDATE audit_events SET timestamp = timestamp WHERE seq = 2",  # no change: still ok
    ],
)
def test_an_edited_field_is_found(db_url: str, tamper: str) -> None:
    _append(db_url, _events(5))
    _sql(db_url, tamper)
    result = _verify(db_url)
    if "seq = 2" in tamper:
        assert result.ok
        return
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 3, "edited")
    assert result.n_problems == 1 and result.first_bad_event_id == _events(5)[2]["event_id"]


def test_an_edited_json_field_is_found(db_url: str) -> None:
    _append(db_url, _events(5))
    with attacker(db_url) as conn:
        snapshot = {"amount": 1.0, "card": "**** 1234", "nested": {"b": 1, "a": [1]}}
        conn.execute(
            text("UPDATE audit_events SET input_snapshot = :v WHERE seq = 4"),
            {"v": json.dumps(snapshot)},
        )
    result = _verify(db_url)
    assert (result.first_bad_seq, result.problem) == (4, "edited")


def test_a_deleted_event_is_found(db_url: str) -> None:
    _append(db_url, _events(5))
    _sql(db_url, "DELETE FROM audit_events WHERE seq = 3")
    result = _verify(db_url)
    assert (result.ok, result.n_events) == (False, 4)
    assert (result.first_bad_seq, result.problem) == (4, "deleted or reordered")


def test_a_deleted_first_event_is_found(db_url: str) -> None:
    _append(db_url, _events(3))
    _sql(db_url, "DELETE FROM audit_events WHERE seq = 1")
    assert (_verify(db_url).first_bad_seq, _verify(db_url).problem) == (2, "deleted or reordered")


def test_swapped_contents_are_found(db_url: str) -> None:
    """Two events trade what they say (transaction and time) but keep their hashes."""
    _append(db_url, _events(5))
    e = _events(5)
    swap = text("UPDATE audit_events SET transaction_id = :tx, timestamp = :ts WHERE seq = :seq")
    with attacker(db_url) as conn:
        conn.execute(swap, {"tx": "tx-3", "ts": e[3]["timestamp"], "seq": 2})
        conn.execute(swap, {"tx": "tx-1", "ts": e[1]["timestamp"], "seq": 4})
    result = _verify(db_url)
    assert (result.first_bad_seq, result.problem, result.n_problems) == (2, "edited", 2)


def test_reordered_events_are_found(db_url: str) -> None:
    """Whole rows moved (hashes and all): every hash still matches, the links do not."""
    _append(db_url, _events(5))
    _sql(
        db_url,
        "UPDATE audit_events SET seq = 100 WHERE seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = 100",
    )
    result = _verify(db_url)
    assert (result.first_bad_seq, result.problem) == (2, "deleted or reordered")


def test_export_jsonl_in_chain_order(db_url: str, tmp_path: Path) -> None:
    _append(db_url, _events(4))
    out = tmp_path / "out" / "audit.jsonl"
    with Session(make_engine(db_url)) as s:
        assert audit.export_jsonl(s, out) == 4
        assert audit.export_jsonl(s, tmp_path / "one.jsonl", transaction_id="tx-2") == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in lines] == [1, 2, 3, 4]
    assert lines[0]["timestamp"] == "2026-03-01T12:00:00.000007"
    assert lines[2]["input_snapshot"]["amount"] == 21.0
    prev = audit.GENESIS  # the export alone is enough to re-check the chain
    for record in lines:
        content = {f: record[f] for f in audit.CONTENT_FIELDS}
        assert record["prev_hash"] == prev and audit.chain_hash(prev, content) == record["hash"]
        prev = record["hash"]
    only = json.loads((tmp_path / "one.jsonl").read_text())
    assert only["transaction_id"] == "tx-2" and only["hash"] == lines[2]["hash"]


def test_decisions_and_reviews_are_chained(db_url: str) -> None:
    tx = _tx(20)
    batch = build_decisions(tx, _scores(20), POLICY, MODEL, NOW)
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        decisions.save(s, batch)
    with Session(engine) as s:
        task = s.scalars(select(ReviewTask).order_by(ReviewTask.case_id)).first()
    assert task is not None
    answer = Answer(
        case_id=task.case_id,
        annotation_id=1,
        updated_at="2026-03-01T12:10:00Z",
        decision="human_reject",
        reviewer="ana@fraudloop.local",
        rationale="card testing",
    )
    for _ in range(2):
        with Session(engine) as s, s.begin():
            finalize(
                s, s.get(ReviewTask, task.case_id), answer, POLICY, NOW + timedelta(minutes=10)
            )
    result = _verify(db_url)
    assert (result.ok, result.n_events) == (True, 21)


@pytest.mark.integration
@pytest.mark.postgres
def test_a_writer_that_skipped_the_lock_cannot_fork_the_chain(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the lock, a second writer reads the head the first is moving: its move waits for
    the first to commit, then finds the head gone and fails; the chain stays one line."""
    from fraudloop.storage import migrate

    migrate(pg_url)
    monkeypatch.setattr(audit, "_lock_chain", lambda session: None)
    engine = make_engine(pg_url)
    first = Session(engine)
    first.begin()
    assert audit.append(first, _events(3, prefix="first")) == 3  # head moved, not committed
    failure: list[BaseException] = []

    def second() -> None:
        with Session(engine) as s, s.begin():
            try:
                audit.append(s, _events(3, prefix="second"))
            except audit.ChainMoved as exc:
                failure.append(exc)

    writer = threading.Thread(target=second)
    writer.start()
    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    with engine.connect() as watcher:
        deadline = time.monotonic() + 30
        while not watcher.execute(waiting).scalar() and time.monotonic() < deadline:
            time.sleep(0.05)  # until the second writer waits on the head's row
    first.commit()
    writer.join(timeout=30)
    assert len(failure) == 1
    result = _verify(pg_url)
    assert (result.ok, result.n_events) == (True, 3)


@pytest.mark.integration
@pytest.mark.postgres
def test_concurrent_writers_one_decision_each(pg_url: str) -> None:
    """8 clients, overlapping shuffled batches, each sent twice: one decision, one event per tx."""
    from fraudloop.storage import migrate

    migrate(pg_url)
    n_tx, n_clients, window = 240, 8, 90
    tx = _tx(n_tx)
    scored = _scores(n_tx)
    start = threading.Barrier(n_clients)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        rows = list(range(k * 20, k * 20 + window))
        random.Random(k).shuffle(rows)
        part = tx.iloc[[r % n_tx for r in rows]].reset_index(drop=True)
        part_scores = scored.iloc[[r % n_tx for r in rows]].reset_index(drop=True)
        batch = build_decisions(part, part_scores, POLICY, MODEL, NOW)
        engine = make_engine(pg_url)
        try:
            start.wait()
            for _ in range(2):  # a retry of the whole request
                with Session(engine) as s, s.begin():
                    decisions.save(s, batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    covered = {
        f"tx-{r % n_tx:04d}" for k in range(n_clients) for r in range(k * 20, k * 20 + window)
    }
    engine = make_engine(pg_url)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == len(covered)
        per_tx = s.execute(
            select(AuditEvent.transaction_id, func.count())
            .where(AuditEvent.event_type.in_(["decision", "routed_to_review"]))
            .group_by(AuditEvent.transaction_id)
        ).all()
        assert {t for t, _ in per_tx} == covered and {c for _, c in per_tx} == {1}
        result = audit.verify(s)
    assert (result.ok, result.n_events) == (True, len(covered))


_WORKER = """
import sys, time
from datetime import datetime
from pathlib import Path
from sqlalchemy.orm import Session
from fraudloop import audit
from fraudloop.storage import make_engine

url, worker, flags = sys.argv[1], sys.argv[2], Path(sys.argv[3])
engine = make_engine(url)
(flags / f"ready-{worker}").touch()
while not (flags / "go").exists():  # start together, after the slow imports
    time.sleep(0.01)
for b in range(40):
    events = [
        audit.event(f"{worker}:{b}:{i}", "alert", worker, datetime(2026, 3, 1), n=i)
        for i in range(5)
    ]
    with Session(engine) as s, s.begin():
        assert audit.append(s, events) == 5
"""


def test_concurrent_sqlite_processes_keep_one_chain(tmp_path: Path) -> None:
    """Separate processes on one SQLite file: the write lock is taken before the head is read."""
    from fraudloop.storage import migrate

    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    workers = ["w0", "w1"]  # each pays a few seconds of imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, w, str(tmp_path)], stderr=subprocess.PIPE
        )
        for w in workers
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{w}").exists() for w in workers):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    (tmp_path / "go").touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    result = _verify(url)
    assert (result.ok, result.n_events) == (True, len(workers) * 40 * 5)


def test_cli_verify_and_export(db_url: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FRAUDLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUDLOOP_DB_URL", db_url)
    get_settings.cache_clear()
    try:
        _append(db_url, _events(4))
        runner = CliRunner()
        ok = runner.invoke(app, ["audit", "verify"])
        assert ok.exit_code == 0, ok.output
        assert "intact: 4 events" in ok.output
        out = tmp_path / "audit.jsonl"
        exported = runner.invoke(app, ["audit", "export", "--out", str(out)])
        assert exported.exit_code == 0 and len(out.read_text().splitlines()) == 4
        one = runner.invoke(app, ["audit", "export", "--out", str(out), "--transaction-id", "tx-1"])
        assert one.exit_code == 0 and json.loads(out.read_text())["transaction_id"] == "tx-1"
        _sql(db_url, "UPDATE audit_events SET actor = 'someone' WHERE seq = 2")
        broken = runner.invoke(app, ["audit", "verify"])
        assert broken.exit_code == 1
        assert "event seq 2" in broken.output and "edited" in broken.output
        assert _events(4)[1]["event_id"] in broken.output
    finally:
        get_settings.cache_clear()
