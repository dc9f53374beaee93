"""Online features read only the labels they can use, and equal features from every label."""

from datetime import datetime, timedelta

import pandas as pd

from fraudloop import labels
from fraudloop.storage import open_session
from models.features import DEFAULT_CONFIG, compute_features
from pipeline.features import RunHistory, batch_features
from simulation.world import SimulationConfig, chargeback_labels, simulate

CUTOFF = datetime(2018, 4, 12)


def test_batch_features_equal_features_from_all_labels(db_url: str) -> None:
    """On both databases: each binds its lists of ids its own way (see `labels._of_entities`)."""
    world = simulate(SimulationConfig(n_customers=150, n_terminals=300, days=14))
    url = db_url
    known = chargeback_labels(world, 1)  # a 1-day delay: many labels known by CUTOFF
    past = world[world["tx_datetime"] < CUTOFF]
    batch = world[world["tx_datetime"] >= CUTOFF].head(300).drop(columns=["is_fraud"])
    with open_session(url) as session, session.begin():
        labels.add_transactions(session, past)
        labels.add_labels(session, known.to_dict("records"))
        got = batch_features(session, batch, DEFAULT_CONFIG)
        last = batch["tx_datetime"].max()
        everything = labels.labels(session, known_before=last)
        used = labels.history_labels(
            session,
            CUTOFF - timedelta(days=DEFAULT_CONFIG.history_days),
            batch["tx_datetime"].min(),
            batch["customer_id"].unique(),
            batch["terminal_id"].unique(),
            batch["transaction_id"],
            known_before=last,
        )
    hist = past[past["tx_datetime"] >= CUTOFF - timedelta(days=DEFAULT_CONFIG.history_days)]
    expected = compute_features(hist, batch, everything, DEFAULT_CONFIG)
    assert len(used) < len(everything)  # fewer rows read ...
    assert got["terminal_id_frauds_known_7day"].sum() > 0  # ... and labels did matter
    pd.testing.assert_frame_equal(got, expected)  # ... for the same features


def test_a_run_of_batches_gets_the_features_each_batch_alone_gets(db_url: str) -> None:
    """A run reads each time slice once, yet sees what others stored ahead of it (here every
    tenth later transaction, stored before the run, as the API would) and its own batches."""
    world = simulate(SimulationConfig(n_customers=150, n_terminals=300, days=14, seed=5))
    later = world[world["tx_datetime"] >= CUTOFF].drop(columns=["is_fraud"]).head(1_000)
    frauds = world[(world["tx_datetime"] >= CUTOFF) & (world["is_fraud"] == 1)]
    reviewed = [  # known half an hour on: within their own batch, before it is stored
        {
            "transaction_id": tx_id,
            "is_fraud": 1,
            "known_at": when + timedelta(minutes=30),
            "source": "review",
            "actor": "reviewer",
        }
        for tx_id, when in zip(frauds["transaction_id"], frauds["tx_datetime"], strict=True)
    ]
    with open_session(db_url) as session, session.begin():
        labels.add_transactions(session, world[world["tx_datetime"] < CUTOFF])
        labels.add_labels(session, chargeback_labels(world, 1).to_dict("records") + reviewed)
        labels.add_transactions(session, later.iloc[::10])
    run = RunHistory()
    batches = [later.iloc[start : start + 200] for start in range(0, len(later), 200)]
    for batch in [*batches, batches[1]]:  # the last one goes back in time: read anew
        with open_session(db_url) as session, session.begin():
            alone = batch_features(session, batch, DEFAULT_CONFIG)
            in_run = batch_features(session, batch, DEFAULT_CONFIG, run)
            labels.add_transactions(session, batch)  # stored, as `score_batch` stores it
        pd.testing.assert_frame_equal(in_run, alone)
    assert alone["customer_id_nb_tx_1day_window"].max() > 1  # history did matter
