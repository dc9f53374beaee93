"""The decision store on SQLite and PostgreSQL: idempotent writes, one decision per transaction."""

from datetime import datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fraudloop import audit, decisions, labels
from fraudloop.decisions import ModelInfo
from fraudloop.policy import load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import AuditEvent, Decision, Quarantine, ReviewTask, make_engine

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


@pytest.mark.integration
def test_decisions_are_idempotent_and_audited(db_url: str) -> None:
    tx = _tx(4)
    batch = decisions.build_decisions(
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


@pytest.mark.integration
def test_review_applied_once_with_label_and_sla(db_url: str) -> None:
    tx = _tx(2)
    batch = decisions.build_decisions(tx, _scores([0.8, 0.9]), POLICY, ModelInfo("m", "1"), NOW)
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        decisions.save(s, batch)
    outcome = {
        "case_id": "tx-0:async_review",
        "annotation_id": 7,
        "updated_at": "2026-03-01T12:10:00Z",
        "decision": "human_approve",
        "reviewer": "ana@fraudloop.local",
        "rationale": "known customer",
    }
    later = NOW + timedelta(minutes=10)
    with Session(engine) as s, s.begin():
        assert decisions.apply_review(s, outcome, later) is True
        assert decisions.apply_review(s, outcome, later) is False
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


@pytest.mark.integration
def test_quarantine_keeps_redacted_record(db_url: str) -> None:
    _, rejected = validate_batch(
        [{"transaction_id": "x", "amount": -1, "card_number": "4111111111111111"}]
    )
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        decisions.quarantine(s, rejected, NOW)
    with Session(engine) as s:
        row = s.scalars(select(Quarantine)).one()
        assert row.transaction_id == "x" and row.field
        assert "4111111111111111" not in str(row.record)
