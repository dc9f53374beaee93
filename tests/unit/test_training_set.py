"""The retraining set holds exactly the labels known by `as_of`, reviewer labels included."""

from datetime import datetime, timedelta

import pandas as pd

from models.features import FEATURE_COLUMNS
from models.training_set import build_training_frame, current_labels
from simulation.world import SimulationConfig, chargeback_labels, simulate

AS_OF = datetime(2018, 4, 20)


def test_only_labels_known_by_as_of_and_reviews_are_included() -> None:
    tx = simulate(SimulationConfig(n_customers=100, n_terminals=200, days=19, seed=2))
    chargebacks = chargeback_labels(tx, delay_days=7)
    recent = tx[tx["tx_datetime"] >= AS_OF - timedelta(days=2)].head(5)
    reviews = pd.DataFrame(
        {
            "transaction_id": recent["transaction_id"],
            "is_fraud": 1,
            "known_at": recent["tx_datetime"] + timedelta(minutes=30),
            "source": "review",
        }
    )
    frame = build_training_frame(tx, pd.concat([chargebacks, reviews]), AS_OF, window_days=10)

    assert list(frame.X.columns) == FEATURE_COLUMNS
    assert len(frame.X) == len(frame.y) == len(frame.transaction_ids)
    used = tx.set_index("transaction_id").loc[frame.transaction_ids]
    assert used["tx_datetime"].is_monotonic_increasing
    assert (used["tx_datetime"] >= AS_OF - timedelta(days=10)).all()
    chargeback_known = used["tx_datetime"] + timedelta(days=7) < AS_OF
    reviewed = used.index.isin(reviews["transaction_id"])
    assert (chargeback_known | reviewed).all()
    assert set(reviews["transaction_id"]) <= set(frame.transaction_ids)
    assert frame.y[[frame.transaction_ids.index(i) for i in reviews["transaction_id"]]].all()


def test_the_latest_known_verdict_wins() -> None:
    events = pd.DataFrame(
        {
            "transaction_id": ["a", "a", "b"],
            "is_fraud": [1, 0, 1],
            "known_at": [AS_OF - timedelta(days=2), AS_OF - timedelta(days=1), AS_OF],
            "source": ["review", "chargeback", "review"],
        }
    )
    assert current_labels(events, AS_OF).to_dict() == {"a": 0}
