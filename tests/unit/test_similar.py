"""Similar past cases: the policy's weights bring the same customer's cases nearer."""

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from fraudloop.policy import SimilarWeights, load_policy
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import Base, Decision
from labeling.review.similar import similar_cases

NOON = datetime(2026, 3, 1, 12, 0)


def decision(tx_id: str, customer: str, terminal: str, amount: float, score: float) -> Decision:
    return Decision(
        transaction_id=tx_id,
        decided_at=NOON,
        tx_datetime=NOON,
        amount=amount,
        score=score,
        route="async_review",
        recommendation="reject",
        final_decision="human_reject",
        policy_version="test",
        input_snapshot={"customer_id": customer, "terminal_id": terminal},
        reviewed_at=NOON,
    )


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all(
            [
                decision("same-customer", "c1", "t9", 130.0, 0.8),
                decision("same-numbers", "c2", "t2", 100.0, 0.8),
                decision("far", "c3", "t3", 1_000.0, 0.1),
            ]
        )
        s.flush()
        yield s


def test_the_policy_weights_rank_the_same_customer_first(session: Session) -> None:
    case = decision("new", "c1", "t1", 100.0, 0.8)
    weights = load_policy(PACKAGE_DIR / "policy.yaml").escalation.similar_weights

    def nearest(weights: SimilarWeights | None) -> str:
        return str(similar_cases(session, [case], 3, 10, weights)["new"][0]["transaction_id"])

    assert nearest(None) == "same-numbers"
    assert nearest(weights) == "same-customer"
