from datetime import datetime, timedelta
from itertools import count

import pandas as pd

from monitoring.metrics import OverrideRate, override_rate

T0 = datetime(2026, 11, 2, 9, 0)
IDS = count()
COLUMNS = [
    "transaction_id",
    "decided_at",
    "route",
    "recommendation",
    "final_decision",
    "score",
    "confidence",
    "amount",
    "review_created_at",
    "reviewed_at",
    "sla_due_at",
    "reviewer",
]


def decision(
    route: str,
    recommendation: str,
    final: str | None,
    *,
    latency: float | None = None,
    sla: float = 30,
    amount: float = 50.0,
    score: float = 0.8,
) -> dict:
    """One decisions-table row; review rows are created at T0, `latency` minutes to close."""
    review = route.endswith("review")
    return {
        "transaction_id": f"t{next(IDS)}",
        "decided_at": T0,
        "route": route,
        "recommendation": recommendation,
        "final_decision": final,
        "score": score,
        "confidence": max(score, 1 - score),
        "amount": amount,
        "review_created_at": T0 if review else pd.NaT,
        "reviewed_at": T0 + timedelta(minutes=latency) if latency is not None else pd.NaT,
        "sla_due_at": T0 + timedelta(minutes=sla) if review else pd.NaT,
        "reviewer": "r1" if latency is not None else None,
    }


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)


def test_override_rate_compares_human_decision_with_recommendation():
    df = frame(
        decision("sync_review", "reject", "human_approve", latency=10),  # override
        decision("sync_review", "reject", "human_reject", latency=10),
        decision("async_review", "approve", "human_reject", latency=10),  # override
        decision("async_review", "reject", "human_reject", latency=10),
    )
    assert override_rate(df) == OverrideRate(reviewed=4, overridden=2, rate=0.5)


def test_override_rate_excludes_pending_escalated_and_auto_decisions():
    df = frame(
        decision("sync_review", "reject", "human_approve", latency=10),
        decision("sync_review", "reject", None),  # pending
        decision("async_review", "reject", "escalated", latency=20),
        decision("auto_allow", "approve", "auto_approve", score=0.1),
        decision("auto_block", "reject", "auto_reject", score=0.99),
    )
    assert override_rate(df) == OverrideRate(reviewed=1, overridden=1, rate=1.0)


def test_override_rate_is_none_without_human_decisions():
    df = frame(decision("sync_review", "reject", None))
    assert override_rate(df).rate is None
