"""Reviewed payments newer than the chargeback delay train the booster, but never calibrate it
nor judge it: they are payments someone chose, the settled ones are every payment."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from models.challenger import fit_challenger, holdout_span, split_by_time
from models.config import packaged_model_config
from models.train import TrainParams, fit_and_calibration_rows
from models.training_set import build_training_frame
from simulation.world import SimulationConfig, chargeback_labels, review_labels, simulate

AS_OF = datetime(2018, 4, 29)
DELAY, WINDOW, HOLDOUT = 7, 21, 3


def test_fit_only_rows_are_fitted_past_the_legit_cap_and_never_calibrate() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(1_000) < 0.1).astype(int)
    fresh = np.zeros(1_000, dtype=bool)
    fresh[[10, 500, 990, 995, 999]] = True  # the newest rows among them: they would calibrate
    params = TrainParams(max_legit_rows=300, calibration_share=0.2)

    fit, calibration = fit_and_calibration_rows(y, params, fresh)

    assert set(np.flatnonzero(fresh)) <= set(fit)
    assert not set(calibration) & set(fit)
    assert not fresh[calibration].any()
    sample = np.flatnonzero(~fresh)
    np.testing.assert_array_equal(calibration, sample[-len(calibration) :])
    assert len(calibration) == round(len(sample) * 0.2)
    assert (y[fit] == 0).sum() == 300 + (y[fresh] == 0).sum()  # the cap, and every fresh legit


def test_without_fit_only_rows_the_split_is_the_time_order_one() -> None:
    y = np.r_[np.zeros(90, int), np.ones(10, int)][np.random.default_rng(1).permutation(100)]
    params = TrainParams(calibration_share=0.2)
    fit, calibration = fit_and_calibration_rows(y, params)
    np.testing.assert_array_equal(fit, np.arange(80))
    np.testing.assert_array_equal(calibration, np.arange(80, 100))


def _world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    tx = simulate(SimulationConfig(n_customers=300, n_terminals=600, days=28, seed=5))
    tx = tx.assign(transaction_id=tx["transaction_id"].astype(str))
    recent = tx[tx["tx_datetime"] >= AS_OF - timedelta(days=DELAY)]
    picked = recent.sort_values("amount", ascending=False).head(400)
    return tx, chargeback_labels(tx, DELAY), review_labels(picked, "active_learning")


def test_reviews_newer_than_the_delay_train_and_the_holdout_is_settled() -> None:
    tx, chargebacks, reviews = _world()
    labels = pd.concat([chargebacks, reviews], ignore_index=True)
    settled_before = AS_OF - timedelta(days=DELAY)
    frame = build_training_frame(tx, labels, AS_OF, WINDOW)

    split = split_by_time(frame, tx, HOLDOUT, settled_before)

    when = tx.set_index("transaction_id")["tx_datetime"]
    held = when.loc[split.holdout.transaction_ids]
    assert (held < settled_before).all()
    assert held.min() >= held.max() - timedelta(days=HOLDOUT)
    trained = when.loc[split.train.transaction_ids].to_numpy()
    np.testing.assert_array_equal(split.fresh, trained >= np.datetime64(settled_before))
    fresh_ids = set(np.asarray(split.train.transaction_ids)[split.fresh])
    # the reviewed payments with a label known by as_of, and nothing else, are the fresh rows
    assert fresh_ids == set(reviews.loc[reviews["known_at"] < AS_OF, "transaction_id"])


def test_a_window_with_nothing_settled_is_judged_on_its_latest_days() -> None:
    tx, _, reviews = _world()
    frame = build_training_frame(tx, reviews, AS_OF, WINDOW)
    split = split_by_time(frame, tx, HOLDOUT, AS_OF - timedelta(days=DELAY))
    assert len(split.holdout.y) > 0
    assert not split.fresh.any()


def test_the_challenger_fits_on_chargebacks_and_reviews_together() -> None:
    tx, chargebacks, reviews = _world()
    config = packaged_model_config().with_delay(DELAY)
    labels = pd.concat([chargebacks, reviews], ignore_index=True)
    challenger = fit_challenger(tx, labels, AS_OF, WINDOW, HOLDOUT, config)
    assert challenger.split.fresh.sum() > 0
    assert challenger.label_counts["active_learning"] == challenger.split.fresh.sum()
    assert 0 < challenger.metrics["average_precision"] <= 1


def test_the_holdout_span_falls_back_to_every_row_when_nothing_is_settled() -> None:
    latest, before = pd.Timestamp("2018-04-28"), datetime(2018, 4, 22)
    start, cutoff = holdout_span(pd.Timestamp("2018-04-21"), latest, before, HOLDOUT)
    assert (start, cutoff) == (pd.Timestamp("2018-04-18"), pd.Timestamp(before))
    start, cutoff = holdout_span(pd.NaT, latest, before, HOLDOUT)
    assert (start, cutoff) == (pd.Timestamp("2018-04-25"), pd.Timestamp.max)
