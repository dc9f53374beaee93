"""The audit trail proves itself: every kind of tampering issue 16 lists is caught (the head row,
the decisions table and signed checkpoints catch what the links alone cannot), a checkpoint is
never signed over a rewritten chain, an inclusion proof is checked by another process from the
proof file alone, and the database itself refuses UPDATE and DELETE of audit events."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from audit_tamper import attacker, tamper
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import exc, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cli.main import app
from fraudloop import audit, checkpoints, decisions
from fraudloop.errors import FraudloopError
from fraudloop.policy import load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR, get_settings
from fraudloop.storage import Decision, ReviewTask, insert_ignore, make_engine
from labeling.review.answers import Answer, finalize
from pipeline.route import ModelInfo, build_decisions

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
NOW = datetime(2026, 3, 1, 12, 0)
N_TX = 80  # decided transactions: one decision event each
N_ALERTS = 60  # then alert events: the tail the truncations cut (more than the 50 they delete)
REVIEWER = "ana@fraudloop.local"
CHAIN = ("edited", "deleted or reordered")  # what the links themselves report


@dataclass(frozen=True)
class Store:
    url: str
    checkpoints: Path
    key: Ed25519PrivateKey
    auto_tx: str  # decided by the router, final auto_reject
    reviewed_tx: str  # routed to review, then reviewed

    def verify(self, with_checkpoints: bool = True) -> audit.VerifyResult:
        with Session(make_engine(self.url)) as s:
            if not with_checkpoints:
                return audit.verify(s)
            return checkpoints.verify(s, self.checkpoints, self.key.public_key())

    def records(self) -> list[dict[str, Any]]:
        with Session(make_engine(self.url)) as s:
            return list(audit.records(s))


def _decided(n: int) -> decisions.DecisionBatch:
    records = [
        {
            "transaction_id": f"tx-{i:04d}",
            "tx_datetime": NOW - timedelta(minutes=n - i),
            "customer_id": f"c{i % 7}",
            "terminal_id": f"t{i % 5}",
            "amount": 10.0 * (i + 1),
        }
        for i in range(n)
    ]
    tx, rejected = validate_batch(records)
    assert not rejected
    reasons = [{"feature": "amount", "value": 1.0, "contribution": 0.5, "text": "big amount"}] * 3
    values = [(i * 0.137) % 1.0 for i in range(n)]  # every route, deterministically
    scores = pd.DataFrame(
        {
            "score": values,
            "confidence": [max(v, 1 - v) for v in values],
            "reasons": [reasons] * n,
        }
    )
    return build_decisions(tx, scores, POLICY, ModelInfo("fraud-detector", "3"), NOW)


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Store:
    """Decisions, one final review, a tail of alerts, and a signed checkpoint of it all."""
    batch = _decided(N_TX)
    auto_tx = next(
        d["transaction_id"] for d in batch.decisions if d["final_decision"] == "auto_reject"
    )
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        decisions.save(s, batch)
    with Session(engine) as s, s.begin():
        task = s.scalars(select(ReviewTask).order_by(ReviewTask.case_id)).first()
        assert task is not None
        answer = Answer(
            case_id=task.case_id,
            annotation_id=1,
            updated_at="2026-03-01T12:10:00Z",
            decision="human_reject",
            reviewer=REVIEWER,
            rationale="card testing",
        )
        assert finalize(s, task, answer, POLICY, NOW + timedelta(minutes=10))
        reviewed_tx = task.transaction_id
    alerts = [
        audit.event(f"alert:{i}", "alert", "monitor", NOW + timedelta(hours=1, seconds=i), n=i)
        for i in range(N_ALERTS)
    ]
    with Session(engine) as s, s.begin():
        assert audit.append(s, alerts) == N_ALERTS
    key, made = checkpoints.ensure_key(tmp_path / "keys" / checkpoints.KEY_FILE)
    assert made
    with Session(engine) as s:
        checkpoints.make(s, tmp_path / "checkpoints", key, NOW + timedelta(hours=2))
    engine.dispose()
    built = Store(db_url, tmp_path / "checkpoints", key, auto_tx, reviewed_tx)
    result = built.verify()
    assert result.ok, result.message()
    assert (result.n_events, result.n_decisions, result.n_checkpoints) == (
        N_TX + 1 + N_ALERTS,
        N_TX,
        1,
    )
    return built


# --- the tampering, one function per kind --------------------------------------------------


def _edit_field(st: Store) -> None:
    tamper(st.url, "UPDATE audit_events SET decision = 'human_approve' WHERE seq = 10")


def _delete_middle(st: Store) -> None:
    tamper(st.url, "DELETE FROM audit_events WHERE seq = 40")


def _swap_contents(st: Store) -> None:
    """Two events trade what they say (transaction and time) but keep their hashes."""
    a, b = st.records()[20], st.records()[30]
    swap = text("UPDATE audit_events SET transaction_id = :tx, timestamp = :ts WHERE seq = :seq")
    with attacker(st.url) as conn:
        for this, that in ((a, b), (b, a)):
            ts = datetime.fromisoformat(that["timestamp"])
            conn.execute(swap, {"tx": that["transaction_id"], "ts": ts, "seq": this["seq"]})


def _rehash_one(st: Store) -> None:
    """One event edited and its own hash recomputed: it checks out, the next link does not."""
    record = st.records()[30]
    record["input_snapshot"] = {**record["input_snapshot"], "amount": 1.0}
    _rewrite(st.url, [record], edited=record["seq"])


def _reorder(st: Store) -> None:
    """Whole rows moved (hashes and all): every hash still matches, the links do not."""
    tamper(
        st.url,
        "UPDATE audit_events SET seq = 100000 WHERE seq = 20",
        "UPDATE audit_events SET seq = 20 WHERE seq = 22",
        "UPDATE audit_events SET seq = 22 WHERE seq = 100000",
    )


def _cut_tail(st: Store, move_head: bool) -> None:
    records = st.records()
    statements = [f"DELETE FROM audit_events WHERE seq > {records[-51]['seq']}"]
    if move_head:  # and the head row set to the new last event, count and all
        statements.append(
            f"UPDATE audit_chain_head SET hash = '{records[-51]['hash']}', "
            f"n_events = {len(records) - 50}"
        )
    tamper(st.url, *statements)


def _delete_all(st: Store, reset: bool) -> None:
    statements = ["DELETE FROM audit_events"]
    if reset:  # a clean wipe: the decisions too, the head back to the genesis
        statements += [
            "DELETE FROM review_tasks",
            "DELETE FROM decisions",
            f"UPDATE audit_chain_head SET hash = '{audit.GENESIS}', n_events = 0",
        ]
    tamper(st.url, *statements)


def _rewrite_suffix(st: Store) -> None:
    """One event edited and every later hash recomputed, the head row moved along."""
    records = st.records()
    records[40]["input_snapshot"] = {**records[40]["input_snapshot"], "amount": 1.0}
    _rewrite(st.url, records[40:], edited=records[40]["seq"], prev=records[39]["hash"])


def _forge_review(st: Store, cover: bool = False) -> None:
    """A forged final review appended through the normal append (the triggers allow inserts)."""
    forged = audit.event(
        f"review:forged:{st.auto_tx}",
        audit.REVIEWED,
        REVIEWER,
        NOW + timedelta(hours=3),
        transaction_id=st.auto_tx,
        decision="human_approve",
        review_rationale="looks fine",
    )
    with Session(make_engine(st.url)) as s, s.begin():
        assert audit.append(s, [forged]) == 1
    if cover:  # and the decision set to match it, so only the missing routing shows
        tamper(
            st.url,
            "UPDATE decisions SET final_decision = 'human_approve', "
            f"reviewer = '{REVIEWER}', review_rationale = 'looks fine' "
            f"WHERE transaction_id = '{st.auto_tx}'",
        )


def _change_decision(st: Store) -> None:
    tamper(
        st.url,
        f"UPDATE decisions SET final_decision = 'auto_approve' WHERE transaction_id = '{st.auto_tx}'",
    )


def _insert_decision(st: Store) -> None:
    row = {**_decided(1).decisions[0], "transaction_id": "tx-without-event"}
    with Session(make_engine(st.url)) as s, s.begin():
        assert insert_ignore(s, Decision, [row]) == 1


def _rewrite(url: str, records: list[dict[str, Any]], edited: int, prev: str | None = None) -> None:
    """Store the records with their hashes recomputed in order (from `prev`, else each one's
    own prev_hash); the head row follows when the rewrite reaches the end of the chain."""
    chained = prev is not None
    update = text("UPDATE audit_events SET prev_hash = :prev, hash = :hash WHERE seq = :seq")
    snapshot = text("UPDATE audit_events SET input_snapshot = :snap WHERE seq = :seq")
    with attacker(url) as conn:
        for record in records:
            link = prev if chained and prev is not None else record["prev_hash"]
            content = {f: record[f] for f in audit.CONTENT_FIELDS}
            digest = audit.chain_hash(link, content)
            conn.execute(update, {"prev": link, "hash": digest, "seq": record["seq"]})
            if record["seq"] == edited:
                conn.execute(
                    snapshot, {"snap": json.dumps(record["input_snapshot"]), "seq": edited}
                )
            prev = digest
        if chained:
            conn.execute(text("UPDATE audit_chain_head SET hash = :h"), {"h": prev})


@dataclass(frozen=True)
class Kind:
    tamper: Callable[[Store], None]
    caught_as: str  # a link problem (`CHAIN`) or a finding's kind
    needs_checkpoints: bool = False  # invisible to everything but a signed checkpoint


KINDS = {  # issue 16 item 7: the four verify caught already, the ones it missed, and variants
    "an edited field": Kind(_edit_field, "edited"),
    "a deleted middle event": Kind(_delete_middle, "deleted or reordered"),
    "swapped contents": Kind(_swap_contents, "edited"),
    "a re-hashed single event": Kind(_rehash_one, "deleted or reordered"),
    "reordered rows": Kind(_reorder, "deleted or reordered"),
    "the last 50 deleted, head row left": Kind(lambda st: _cut_tail(st, False), "head"),
    "the last 50 deleted, head row moved": Kind(lambda st: _cut_tail(st, True), "truncated", True),
    "all deleted, head row left": Kind(lambda st: _delete_all(st, False), "head"),
    "all deleted, head and decisions reset": Kind(
        lambda st: _delete_all(st, True), "truncated", True
    ),
    "one edited, every later hash recomputed": Kind(_rewrite_suffix, "rewritten", True),
    "a forged review through the normal append": Kind(_forge_review, "decision"),
    "a forged review, the decision set to match": Kind(
        lambda st: _forge_review(st, cover=True), "decision"
    ),
    "a final decision changed without an event": Kind(_change_decision, "decision"),
    "a decision without an event": Kind(_insert_decision, "decision"),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_each_tamper_kind_is_caught(store: Store, name: str) -> None:
    kind = KINDS[name]
    kind.tamper(store)
    without = store.verify(with_checkpoints=False)
    if kind.needs_checkpoints:  # what the checkpoints are for: the database alone looks fine
        assert without.ok, without.message()
    result = store.verify() if kind.needs_checkpoints else without
    assert not result.ok
    if kind.caught_as in CHAIN:
        assert result.problem == kind.caught_as, result.message()
    else:
        assert kind.caught_as in {f.kind for f in result.findings}, result.message()
    assert not store.verify().ok  # and with the checkpoints, whatever the kind


def test_the_findings_name_what_changed(store: Store) -> None:
    _change_decision(store)
    assert (
        f"decision {store.auto_tx} says final auto_approve (reviewer None), its last decision "
        "event (seq 8) says final auto_reject (reviewer None): changed without an event"
    ) in store.verify().message()
    _forge_review(store)
    assert "follows no routed_to_review event" in store.verify().message()
    _cut_tail(store, move_head=False)
    message = store.verify().message()
    assert "the head row says the chain ends in" in message
    assert f"the head row counts {N_TX + 2 + N_ALERTS} events, the chain has 92" in message
    assert "signed 141 events, the chain has 92: events were deleted from its end" in message


@pytest.mark.parametrize(
    "kind", ["one edited, every later hash recomputed", "the last 50 deleted, head row moved"]
)
def test_a_checkpoint_is_never_signed_over_a_rewritten_chain(store: Store, kind: str) -> None:
    """Certificate Transparency's consistency: a new checkpoint must extend the last one."""
    KINDS[kind].tamper(store)
    with Session(make_engine(store.url)) as s, pytest.raises(FraudloopError, match="refusing"):
        checkpoints.make(s, store.checkpoints, store.key, NOW + timedelta(hours=3))
    assert len(list(store.checkpoints.glob("*.json"))) == 1


def test_checkpoints_extend_and_nothing_new_signs_nothing(store: Store) -> None:
    with Session(make_engine(store.url)) as s:
        same, path = checkpoints.make(s, store.checkpoints, store.key, NOW + timedelta(hours=3))
    assert path is None and same.n_events == N_TX + 1 + N_ALERTS
    later = audit.event("alert:late", "alert", "monitor", NOW + timedelta(hours=4))
    with Session(make_engine(store.url)) as s, s.begin():
        audit.append(s, [later])
    with Session(make_engine(store.url)) as s:
        grown, path = checkpoints.make(s, store.checkpoints, store.key, NOW + timedelta(hours=5))
    assert path is not None and grown.n_events == same.n_events + 1
    assert oct(path.stat().st_mode & 0o777) == "0o444"  # written once, read-only
    with pytest.raises(FileExistsError):
        checkpoints.write(store.checkpoints, grown)  # never rewritten
    result = store.verify()
    assert (result.ok, result.n_checkpoints) == (True, 2)


def test_a_changed_or_foreign_checkpoint_is_reported(store: Store) -> None:
    (path,) = store.checkpoints.glob("*.json")
    data = json.loads(path.read_text())
    path.chmod(0o644)
    path.write_text(json.dumps({**data, "n_events": data["n_events"] - 50}))
    other = Ed25519PrivateKey.generate()
    with Session(make_engine(store.url)) as s:
        cp = checkpoints.tree_head(s)
    checkpoints.write(store.checkpoints, checkpoints.sign(other, *cp, NOW))
    findings = [f.detail for f in store.verify().findings if f.kind == "checkpoint"]
    assert len(findings) == 2
    assert any("signature does not verify" in f for f in findings)
    assert any("signed by another key" in f for f in findings)


def test_the_trigger_refuses_update_delete(db_url: str) -> None:
    """The store itself refuses to rewrite an audit event; appends go on as before."""
    with Session(make_engine(db_url)) as s, s.begin():
        audit.append(s, [audit.event(f"k{i}", "alert", "monitor", NOW) for i in range(3)])
    statements = [
        "UPDATE audit_events SET actor = 'someone' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 3",
        "DELETE FROM audit_events",
    ]
    if db_url.startswith("postgresql"):
        statements.append("TRUNCATE audit_events")
    engine = make_engine(db_url)
    for statement in statements:
        with pytest.raises(exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with Session(engine) as s, s.begin():
        assert audit.append(s, [audit.event("k3", "alert", "monitor", NOW)]) == 1
    with Session(engine) as s:
        result = audit.verify(s)
    assert (result.ok, result.n_events) == (True, 4)


def _proof(store: Store, tmp_path: Path, transaction_id: str) -> tuple[Path, Path]:
    """The proof file and the public key, copied where the store and the private key are not."""
    with Session(make_engine(store.url)) as s:
        found = checkpoints.latest(store.checkpoints, store.key.public_key())
        assert found is not None
        proof = checkpoints.prove(s, transaction_id, found[1])
    elsewhere = tmp_path / "regulator"
    elsewhere.mkdir()
    out = elsewhere / "proof.json"
    out.write_text(json.dumps(proof, indent=2))
    public = store.checkpoints.parent / "keys" / "audit-signing.pub"
    shutil.copy(public, elsewhere / "signer.pub")
    return out, elsewhere / "signer.pub"


def _check_elsewhere(proof: Path, public: Path) -> subprocess.CompletedProcess[str]:
    """`fraudloop audit check-proof` in another process whose store cannot be reached."""
    env = {
        **os.environ,
        "FRAUDLOOP_HOME": str(proof.parent / "home"),
        "FRAUDLOOP_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:9/unreachable",
    }
    command = [sys.executable, "-m", "cli.main", "audit", "check-proof", str(proof)]
    return subprocess.run(
        [*command, "--public-key", str(public)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
        timeout=120,
        check=False,
    )


def test_a_proof_is_checked_by_another_process_from_the_file_alone(
    store: Store, tmp_path: Path
) -> None:
    proof, public = _proof(store, tmp_path, store.reviewed_tx)
    events = json.loads(proof.read_text())["events"]
    assert [e["event"]["event_type"] for e in events] == [audit.ROUTED, audit.REVIEWED]
    done = _check_elsewhere(proof, public)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"proof holds: 2 event(s) of {store.reviewed_tx}" in done.stdout
    assert "human_reject" in done.stdout and not (proof.parent / "home").exists()
    data = json.loads(proof.read_text())
    data["events"][1]["event"]["decision"] = "human_approve"  # what a forger would want
    proof.write_text(json.dumps(data))
    forged = _check_elsewhere(proof, public)
    assert forged.returncode == 1 and "no longer matches its hash" in forged.stdout


def _forged(proof: dict[str, Any], how: str) -> dict[str, Any]:
    """A proof changed as a forger would, every hash they can recompute recomputed."""
    item = proof["events"][-1]
    record = item["event"]
    if how == "event re-hashed":
        record["decision"] = "human_approve"
        content = {f: record[f] for f in audit.CONTENT_FIELDS}
        record["hash"] = audit.chain_hash(record["prev_hash"], content)
    elif how == "another leaf index":
        item["index"] += 1
    elif how == "path cut short":
        item["audit_path"] = item["audit_path"][:-1]
    elif how == "checkpoint re-rooted":
        proof["checkpoint"]["merkle_root"] = "00" * 32
    elif how == "another transaction":
        proof["transaction_id"] = "tx-0000"
    elif how == "no events":
        proof["events"] = []
    elif how == "malformed":
        item["audit_path"] = ["not hex"]
    return proof


@pytest.mark.parametrize(
    "how",
    [
        "event re-hashed",
        "another leaf index",
        "path cut short",
        "checkpoint re-rooted",
        "another transaction",
        "no events",
        "malformed",
        "another key",
    ],
)
def test_a_forged_proof_fails(store: Store, tmp_path: Path, how: str) -> None:
    path, public = _proof(store, tmp_path, store.reviewed_tx)
    key = checkpoints.load_public_key(public)
    assert checkpoints.check_proof(json.loads(path.read_text()), key).ok
    if how == "another key":
        key = Ed25519PrivateKey.generate().public_key()
    result = checkpoints.check_proof(_forged(json.loads(path.read_text()), how), key)
    assert not result.ok, how
    assert result.message().startswith("proof fails: ")


def test_events_after_the_checkpoint_wait_for_the_next(store: Store) -> None:
    late = audit.event("late:1", "alert", "monitor", NOW, transaction_id="tx-late")
    with Session(make_engine(store.url)) as s, s.begin():
        audit.append(s, [late])
    found = checkpoints.latest(store.checkpoints, store.key.public_key())
    assert found is not None
    with Session(make_engine(store.url)) as s, pytest.raises(FraudloopError, match="after the"):
        checkpoints.prove(s, "tx-late", found[1])
    with Session(make_engine(store.url)) as s, pytest.raises(FraudloopError, match="no audit"):
        checkpoints.prove(s, "tx-unknown", found[1])


def test_cli_checkpoint_verify_prove_and_export(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FRAUDLOOP_HOME", str(home))
    monkeypatch.setenv("FRAUDLOOP_DB_URL", db_url)
    get_settings.cache_clear()
    try:
        with Session(make_engine(db_url)) as s, s.begin():
            decisions.save(s, _decided(12))
        runner = CliRunner()
        made = runner.invoke(app, ["audit", "checkpoint"])
        assert made.exit_code == 0, made.output
        assert "new signing key" in made.output and "checkpoint of 12 events" in made.output
        key_file = home / checkpoints.KEY_FILE
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        public = checkpoints.public_key_path(key_file)
        public_hex = checkpoints.public_hex(checkpoints.load_public_key(public))
        assert public_hex in made.output  # printed, to publish
        ok = runner.invoke(app, ["audit", "verify", "--checkpoints", str(home / "checkpoints")])
        assert ok.exit_code == 0 and "1 signed checkpoint(s) hold" in ok.output, ok.output
        proof = tmp_path / "proof.json"
        proved = runner.invoke(app, ["audit", "prove", "tx-0003", "--out", str(proof)])
        assert proved.exit_code == 0, proved.output
        checked = runner.invoke(
            app, ["audit", "check-proof", str(proof), "--public-key", public_hex]
        )
        assert checked.exit_code == 0 and "proof holds" in checked.output, checked.output
        export = tmp_path / "audit.jsonl"
        assert runner.invoke(app, ["audit", "export", "--out", str(export)]).exit_code == 0
        lines = [json.loads(line) for line in export.read_text().splitlines()]
        assert len(lines) == 13 and lines[-1]["checkpoint"]["n_events"] == 12
        _change_decision_cli(db_url)
        broken = runner.invoke(app, ["audit", "verify", "--checkpoints", str(home / "checkpoints")])
        assert broken.exit_code == 1 and "changed without an event" in broken.output
        missing = runner.invoke(app, ["audit", "verify", "--checkpoints", str(tmp_path / "none")])
        assert missing.exit_code == 2 and "--checkpoints" in missing.output
    finally:
        get_settings.cache_clear()


def _change_decision_cli(url: str) -> None:
    tamper(
        url,
        "UPDATE decisions SET final_decision = 'human_approve' WHERE transaction_id = 'tx-0001'",
    )
