"""A small store built by hand for the QA reports' tests, where every answer is known:
decisions routed by the real router, answers applied by the real review tiers (second sign-off,
Tier 2, SLA sweep), labels from reviews, an exploration pick and chargebacks, and the week's
alerts and champion moves.

The week is [2026-11-02, 2026-11-09) (`AS_OF` its end). What each transaction is for is in
`WEEK`; `BEFORE` is the week before it, under an older policy version.
"""

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy.orm import Session

from fraudloop import audit, decisions, labels
from fraudloop.policy import Policy, load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import ReviewTask, insert_ignore, make_engine, migrate
from labeling.review import answers, sla
from labeling.reviewers import register
from pipeline.route import ModelInfo, build_decisions

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
OLD_POLICY = POLICY.model_copy(update={"version": "2026.11.9"})
AS_OF = datetime(2026, 11, 9)
T1 = datetime(2026, 11, 3, 10, 0)  # the week's main batch is decided then
T2 = datetime(2026, 11, 8, 23, 0)  # a late case, still within its SLA at AS_OF
T0 = datetime(2026, 10, 27, 12, 0)  # the week before
R1, R2, SENIOR = "ana@x", "bo@x", "sam@x"
# transaction -> (score, amount, customer, terminal)
WEEK = {
    "a1": (0.05, 30.0, "c1", "T1"),  # auto-allowed, pending (chargeback window open)
    "a2": (0.05, 30.0, "c2", "T1"),
    "a3": (0.05, 30.0, "c3", "T1"),
    "a4": (0.05, 30.0, "c4", "T1"),
    "a5": (0.30, 80.0, "c5", "T1"),  # auto-allowed, charged back: a miss
    "b1": (0.97, 500.0, "c6", "T2"),  # auto-blocked, never known
    "b2": (0.99, 500.0, "c7", "T2"),
    "b3": (0.98, 400.0, "c8", "T2"),  # auto-blocked, exploration pick found it legit
    "r1": (0.80, 100.0, "c9", "T3"),  # async review, rejected in 30 min: fraud caught
    "r2": (0.80, 60.0, "c10", "T3"),  # approved in 60 min, charged back later
    "r3": (0.82, 90.0, "c11", "T3"),  # approved in 150 min (SLA 120), charged back later
    "h1": (0.90, 2000.0, "c12", "T4"),  # sync, high impact: both sign-offs reject
    "h2": (0.88, 3000.0, "c13", "T4"),  # sign-offs disagree -> Tier 2 rejects 50 min later
    "s1": (0.80, 70.0, "c14", "T3"),  # never answered: swept to Tier 2, open past its SLA
}
LATE = {"p1": (0.80, 50.0, "c1", "T1")}  # c1 paid at T1 before: a known terminal
BEFORE = {
    "o1": (0.05, 40.0, "c20", "T1"),  # charged back within its week
    "o2": (0.05, 40.0, "c21", "T1"),
    "o3": (0.05, 40.0, "c22", "T1"),
    "o4": (0.99, 300.0, "c23", "T2"),
}


Rows = dict[str, tuple[float, float, str, str]]


def _decide(s: Session, rows: Rows, now: datetime, policy: Policy = POLICY) -> None:
    records = [
        {
            "transaction_id": tx,
            "tx_datetime": now - timedelta(minutes=1),
            "customer_id": customer,
            "terminal_id": terminal,
            "amount": amount,
        }
        for tx, (_, amount, customer, terminal) in rows.items()
    ]
    frame, rejected = validate_batch(records)
    assert not rejected
    scores = [score for score, *_ in rows.values()]
    scored = pd.DataFrame(
        {
            "score": scores,
            "confidence": [max(v, 1 - v) for v in scores],
            "reasons": [[{"feature": "x", "value": 1.0, "contribution": 0.1, "text": "x"}] * 3]
            * len(scores),
        }
    )
    decisions.save(s, build_decisions(frame, scored, policy, ModelInfo("m", "4"), now))
    labels.add_transactions(s, frame)
    s.commit()


def _answer(s: Session, case: str, n: int, who: str, decision: str, at: datetime) -> str:
    answer = answers.Answer(
        case_id=case,
        annotation_id=n,
        updated_at=at.isoformat(),
        reviewer=who,
        decision=decision,
        rationale="checked with the cardholder",
    )
    outcome = answers.receive(s, answer, POLICY, at)
    s.commit()
    return outcome


def _label(s: Session, tx: str, fraud: int, at: datetime, source: str = "chargeback") -> None:
    labels.add_labels(
        s, [{"transaction_id": tx, "is_fraud": fraud, "known_at": at, "source": source}]
    )
    s.commit()


def _event(s: Session, key: str, kind: str, at: datetime, **details: object) -> None:
    audit.append(s, [audit.event(key, kind, "monitor", at, **details)])
    s.commit()


def build_store(url: str) -> None:
    migrate(url)
    s = Session(make_engine(url), expire_on_commit=False)
    for i, (email, role) in enumerate({R1: "reviewer", R2: "reviewer", SENIOR: "senior"}.items()):
        register(s, email, role, i + 1, "admin@x", T0)
    s.commit()
    old = pd.DataFrame(  # c1's first payment, long before: tenure
        [
            {
                "transaction_id": "h0",
                "tx_datetime": datetime(2026, 9, 1),
                "customer_id": "c1",
                "terminal_id": "T9",
                "amount": 10.0,
            }
        ]
    )
    labels.add_transactions(s, old)
    _decide(s, BEFORE, T0, OLD_POLICY)
    _label(s, "o1", 1, datetime(2026, 10, 31))
    _decide(s, WEEK, T1)
    insert_ignore(  # an exploration pick of an auto-block, drawn with chance 1/2
        s,
        ReviewTask,
        [
            {
                "case_id": "b3:active_learning",
                "transaction_id": "b3",
                "queue": "active_learning",
                "priority": 1.0,
                "created_at": T1,
                "sla_due_at": T1 + timedelta(days=1),
                "status": "pending",
                "attempts": 0,
                "strategy": "exploration",
                "propensity": 0.5,
            }
        ],
    )
    s.commit()
    m = lambda minutes: T1 + timedelta(minutes=minutes)  # noqa: E731
    assert _answer(s, "b3:active_learning", 1, R1, "human_approve", m(20)) == "applied"
    assert _answer(s, "r1:async_review", 2, R1, "human_reject", m(30)) == "applied"
    assert _answer(s, "r2:async_review", 3, R1, "human_approve", m(60)) == "applied"
    assert _answer(s, "r3:async_review", 4, R1, "human_approve", m(150)) == "applied"
    assert _answer(s, "h1:sync_review", 5, R1, "human_reject", m(10)) == "awaiting_signoff"
    assert _answer(s, "h1:second_signoff", 6, R2, "human_reject", m(40)) == "applied"
    assert _answer(s, "h2:sync_review", 7, R1, "human_reject", m(5)) == "awaiting_signoff"
    assert _answer(s, "h2:second_signoff", 8, R2, "human_approve", m(20)) == "escalated"
    assert _answer(s, "h2:tier2", 9, SENIOR, "human_reject", m(70)) == "applied"
    assert sla.sweep(s, POLICY, m(155)).escalated == ["s1:async_review"]
    s.commit()
    _label(s, "a5", 1, datetime(2026, 11, 7))
    _label(s, "r2", 1, datetime(2026, 11, 8))
    _label(s, "r3", 1, datetime(2026, 11, 8))
    _decide(s, LATE, T2)
    _event(
        s,
        "alert:1",
        "alert",
        datetime(2026, 11, 4),
        rule="override_rate",
        scope="large",
        value=0.3,
        threshold=0.15,
        message="override rate 30% above 15%",
    )
    _event(
        s,
        "alert:2",
        "alert_resolved",
        datetime(2026, 11, 5),
        rule="override_rate",
        scope="large",
        value=0.1,
        threshold=0.15,
        message="resolved",
    )
    audit.append(
        s,
        [
            audit.event(
                "promo:5",
                "promotion",
                "retrain",
                datetime(2026, 11, 5),
                model_version="5",
                previous_champion=4,
                reason="0.8 > 0.7",
            )
        ],
    )
    audit.append(
        s,
        [
            audit.event(
                "rb:5",
                "rollback",
                R1,
                datetime(2026, 11, 6),
                model_version="4",
                previous_champion=5,
                reason="rollback",
            )
        ],
    )
    s.commit()
    s.close()
