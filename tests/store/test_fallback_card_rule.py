"""Issue 16 item 9 on a real store (SQLite, and PostgreSQL in the full suite): the fallback card
rule reads the batch's flagged cards in one query and each decision stores the rule it fell to."""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from fraudloop import audit, labels
from fraudloop.policy import load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import Decision, ReviewTask, make_engine
from labeling.review.answers import Answer, finalize
from pipeline.decide import card_flags, score_batch

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
DAYS = POLICY.fallback.flagged_card_days or 0
NOW = datetime(2026, 3, 1, 12, 0)
SMALL = POLICY.fallback.review_amount_above / 10  # no amount rule applies
BLOCKED = POLICY.fallback.block_amount_above + 1


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        yield s
    engine.dispose()


def _record(tx_id: str, customer: str, amount: float, at: datetime) -> dict[str, Any]:
    return {
        "transaction_id": tx_id,
        "tx_datetime": at,
        "customer_id": customer,
        "terminal_id": "term-1",
        "amount": amount,
    }


def _paid(s: Session, tx_id: str, customer: str, at: datetime) -> None:
    frame, _ = validate_batch([_record(tx_id, customer, SMALL, at)])
    labels.add_transactions(s, frame)


def _label(s: Session, tx_id: str, is_fraud: int, known_at: datetime, source: str) -> None:
    labels.add_labels(
        s,
        [{"transaction_id": tx_id, "is_fraud": is_fraud, "known_at": known_at, "source": source}],
    )


def _flags(s: Session, *customers: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    since = NOW - timedelta(days=DAYS)
    return labels.flagged_cards(s, customers, exclude, since, NOW)


@pytest.mark.parametrize(
    ("age", "flagged"),
    [
        (timedelta(days=DAYS), True),  # exactly N days ago: still flagged
        (timedelta(days=DAYS, seconds=1), False),
        (timedelta(days=DAYS + 1), False),
        (timedelta(microseconds=1), True),
        (timedelta(0), False),  # known at this very `now`: a later batch's, not this one's
    ],
)
def test_a_fraud_label_flags_the_card_for_n_days(
    session: Session, age: timedelta, flagged: bool
) -> None:
    _paid(session, "old", "c1", NOW - timedelta(days=60))
    _label(session, "old", 1, NOW - age, "chargeback")
    got = _flags(session, "c1")
    assert ("c1" in got) is flagged
    if flagged:
        assert got["c1"].cause == "fraud label (chargeback)" and got["c1"].at == NOW - age


@pytest.mark.parametrize(
    ("fraud_at", "legit_at", "flagged"),
    [
        (5, 2, False),  # a later legit label takes the fraud back: the latest label wins
        (2, 5, True),  # the fraud came later
        (3, 3, True),  # a tie: the fraud wins, as everywhere labels are combined
        (5, -1, True),  # the legit label is not known yet at `now`
    ],
)
def test_the_latest_label_wins(
    session: Session, fraud_at: int, legit_at: int, flagged: bool
) -> None:
    _paid(session, "p", "c1", NOW - timedelta(days=20))
    _label(session, "p", 1, NOW - timedelta(days=fraud_at), "review")
    _label(session, "p", 0, NOW - timedelta(days=legit_at), "active_learning")
    assert ("c1" in _flags(session, "c1")) is flagged


def _decide(s: Session, records: list[dict[str, Any]], now: datetime) -> None:
    result = score_batch(s, records, None, POLICY, now)  # no model: the fallback rules decide
    assert result.fallback and result.new_decisions == len(records)


def _review(s: Session, tx_id: str, decision: str, at: datetime) -> None:
    task = s.get(ReviewTask, f"{tx_id}:async_review")
    assert task is not None
    answer = Answer(
        case_id=task.case_id,
        annotation_id=1,
        updated_at=at.isoformat(),
        reviewer="ana@fraudloop.local",
        decision=decision,
        rationale="checked with the customer",
    )
    assert finalize(s, task, answer, POLICY, at)


def test_declined_payments_flag_the_card_approved_ones_do_not(session: Session) -> None:
    earlier = NOW - timedelta(days=2)
    review = POLICY.fallback.review_amount_above + 1
    _decide(
        session,
        [
            _record("blocked", "c-blocked", BLOCKED, earlier),  # auto_reject by the amount rule
            _record("rejected", "c-rejected", review, earlier),  # to review, then rejected
            _record("approved", "c-approved", review, earlier),  # to review, then approved
        ],
        earlier,
    )
    _review(session, "rejected", "human_reject", earlier + timedelta(hours=1))
    _review(session, "approved", "human_approve", earlier + timedelta(hours=1))
    long_ago = NOW - timedelta(days=DAYS + 1)
    _decide(session, [_record("stale", "c-stale", BLOCKED, long_ago)], long_ago)
    got = _flags(session, "c-blocked", "c-rejected", "c-approved", "c-stale", "c-none")
    assert set(got) == {"c-blocked", "c-rejected"}
    assert got["c-blocked"].cause == "payment declined (auto_reject)"
    assert got["c-blocked"].at == earlier
    assert got["c-rejected"].at == earlier + timedelta(hours=1)
    assert _flags(session, "c-blocked", exclude=("blocked",)) == {}  # the batch's own: not yet


def test_a_later_legit_label_takes_back_a_declined_payment(session: Session) -> None:
    earlier = NOW - timedelta(days=3)
    _decide(session, [_record("blocked", "c1", BLOCKED, earlier)], earlier)
    _label(session, "blocked", 0, earlier + timedelta(days=1), "active_learning")
    assert _flags(session, "c1") == {}


def test_scoring_without_a_model_routes_a_flagged_card_by_the_card_rule(session: Session) -> None:
    """History: c-bad's old payment came back as a chargeback 10 days ago, c-old's beyond the
    window. A batch of small payments, no model: c-bad's goes to review by the card rule, with
    the rule in its decision and audit event; the others are allowed, naming their rule."""
    _paid(session, "bad-then", "c-bad", NOW - timedelta(days=40))
    _label(session, "bad-then", 1, NOW - timedelta(days=10), "chargeback")
    _paid(session, "old-then", "c-old", NOW - timedelta(days=90))
    _label(session, "old-then", 1, NOW - timedelta(days=DAYS + 5), "chargeback")
    batch = [
        _record("now-bad", "c-bad", SMALL, NOW - timedelta(minutes=1)),
        _record("now-old", "c-old", SMALL, NOW - timedelta(minutes=1)),
        _record("now-ok", "c-ok", SMALL, NOW - timedelta(minutes=1)),
    ]
    _decide(session, batch, NOW)
    stored = {
        d.transaction_id: d
        for d in session.scalars(select(Decision).where(Decision.transaction_id.like("now-%")))
    }
    assert {t: d.route for t, d in stored.items()} == {
        "now-bad": "async_review",
        "now-old": "auto_allow",
        "now-ok": "auto_allow",
    }
    assert all(d.fallback and d.score is None for d in stored.values())
    flagged = stored["now-bad"].reasons[0]
    assert flagged["feature"] == "fallback.flagged_card_days"
    assert "fraud label (chargeback) 10 days ago" in flagged["text"]
    assert stored["now-ok"].reasons[0]["feature"] == "fallback.below_review_amount"
    assert session.get(ReviewTask, "now-bad:async_review") is not None
    trail = audit.trail(session, "now-bad")
    decided = trail[trail["event_type"] == "routed_to_review"].iloc[0]
    assert decided["actor"] == "fallback_rules"
    assert decided["details"]["fallback_rule"] == "flagged_card_days"
    assert decided["explanation_tokens"] == [flagged["text"]]


def test_the_flagged_cards_of_a_batch_are_one_query(session: Session) -> None:
    records = [_record(f"t{i}", f"c{i % 40}", SMALL, NOW) for i in range(200)]
    frame, _ = validate_batch(records)
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(args[2])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        card_flags(session, frame, POLICY, NOW)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 1
