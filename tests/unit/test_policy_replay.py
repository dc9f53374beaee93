"""Replaying stored decisions under a candidate policy, on tiny inline frames."""

from datetime import datetime

import pandas as pd
import pytest

from fraudloop.errors import FraudloopError
from fraudloop.policy import Policy, load_policy
from fraudloop.policy_replay import compare, ground_truth, parse_since, replay_routes
from fraudloop.settings import PACKAGE_DIR

CURRENT = load_policy(PACKAGE_DIR / "policy.yaml")


def with_fraud(**rules: float) -> Policy:
    return CURRENT.model_copy(
        update={"version": "candidate", "fraud": CURRENT.fraud.model_copy(update=rules)}
    )


def decisions() -> pd.DataFrame:
    rows = [
        # id, day, score, amount, final decision
        ("a", 1, 0.10, 20.0, "auto_approve"),  # legit by chargeback window
        ("b", 1, 0.80, 50.0, "human_reject"),  # fraud by review
        ("c", 2, 0.90, 70.0, None),  # fraud by chargeback, still in review
        ("d", 2, 0.97, 900.0, "auto_reject"),  # no label yet
        ("e", 2, None, 2000.0, "auto_reject"),  # fallback decision
    ]
    return pd.DataFrame(
        {
            "transaction_id": [r[0] for r in rows],
            "decided_at": [datetime(2018, 5, r[1], 12) for r in rows],
            "score": [r[2] for r in rows],
            "confidence": [None if r[2] is None else max(r[2], 1 - r[2]) for r in rows],
            "amount": [r[3] for r in rows],
            "final_decision": [r[4] for r in rows],
            "input_snapshot": [{"terminal_id": "t1"}] * len(rows),
        }
    )


LABELS = pd.DataFrame(
    {
        "transaction_id": ["a", "b", "c", "c"],
        "is_fraud": [0, 1, 0, 1],
        "known_at": pd.to_datetime(["2018-05-08", "2018-05-01", "2018-05-02", "2018-05-09"]),
        "source": ["chargeback", "review", "review", "chargeback"],
    }
)


def test_ground_truth_latest_label_then_human_decision() -> None:
    assert ground_truth(decisions(), LABELS).tolist() == [
        "legit",
        "fraud",
        "fraud",  # the later chargeback overrides the earlier review
        "unknown",
        "unknown",
    ]


def test_replay_uses_stored_score_or_fallback_rules() -> None:
    assert replay_routes(decisions(), CURRENT).tolist() == [
        "auto_allow",
        "async_review",
        "sync_review",
        "auto_block",
        "auto_block",  # fallback: amount above the fallback block limit
    ]


def test_same_policy_changes_nothing() -> None:
    replay = compare(decisions(), LABELS, CURRENT, CURRENT)
    out = replay.outcomes
    assert (out["current_n"] == out["candidate_n"]).all()
    assert out["current_n"].sum() == replay.n_decisions == 5
    assert (replay.review_load["current"] == replay.review_load["candidate"]).all()


def test_lower_block_threshold_moves_fraud_from_review_to_blocked() -> None:
    replay = compare(
        decisions(), LABELS, CURRENT, with_fraud(sync_score_from=0.8, block_above=0.85)
    )
    out = replay.outcomes.set_index(["truth", "action"])
    assert out.loc[("fraud", "review"), "current_n"] == 2
    assert out.loc[("fraud", "review"), "candidate_n"] == 1  # c (0.90) is now blocked
    assert out.loc[("fraud", "blocked"), "candidate_amount"] == pytest.approx(70.0)
    assert out.loc[("legit", "allowed"), "candidate_n"] == 1
    load = replay.review_load.set_index(["day", "queue"])
    assert load.loc[("2018-05-02", "sync_review"), "current"] == 1
    assert load.loc[("2018-05-02", "sync_review"), "candidate"] == 0
    # b (0.80) was medium risk; the candidate makes it high risk -> synchronous queue
    assert load.loc[("2018-05-01", "sync_review"), "candidate"] == 1


def test_second_signoff_counts_high_impact_reviews() -> None:
    frame = decisions()
    frame.loc[frame["transaction_id"] == "c", "amount"] = 5000.0
    replay = compare(frame, LABELS, CURRENT, CURRENT)
    load = replay.review_load.set_index(["day", "queue"])
    assert load.loc[("2018-05-02", "sync_review"), "current_second_signoff"] == 1
    assert load["candidate_second_signoff"].sum() == 1


def test_no_review_cases_gives_an_empty_load() -> None:
    frame = decisions().iloc[[0, 3]]
    assert compare(frame, LABELS, CURRENT, CURRENT).review_load.empty


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", datetime(2018, 5, 3)),
        ("36h", datetime(2018, 5, 8, 12)),
        ("90m", datetime(2018, 5, 9, 22, 30)),
        ("2018-05-01", datetime(2018, 5, 1)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, datetime(2018, 5, 10)) == expected


def test_parse_since_names_the_option() -> None:
    with pytest.raises(FraudloopError, match="--since"):
        parse_since("last week", datetime(2018, 5, 10))
