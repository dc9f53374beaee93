"""Training on Dask (`models.dask_train`) against one process, on a small simulated world and a
local cluster of two single-threaded workers."""

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from models.challenger import Challenger, fit_challenger
from models.config import ModelConfig, packaged_model_config
from models.dask_train import (
    ID,
    LABEL,
    TRAINER,
    build_training_frame_dask,
    fit_challenger_dask,
    train_model_dask,
)
from models.features import feature_columns
from models.train import FraudModel, train_model
from models.training_set import build_training_frame
from simulation.world import SimulationConfig, chargeback_labels, review_labels, simulate

AS_OF = datetime(2018, 5, 6)  # the end of the simulated 35 days
WINDOW_DAYS, HOLDOUT_DAYS, DELAY_DAYS = 21, 5, 7
AP_TOLERANCE = 0.005  # issue 15: the same model quality as the single-process fit


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Chargebacks, and reviews of the week they have not reached yet (rows the booster fits
    on but that never calibrate nor judge it)."""
    tx = simulate(SimulationConfig(n_customers=400, n_terminals=800, days=35, seed=4))
    tx = tx.assign(transaction_id=tx["transaction_id"].astype(str))
    recent = tx[tx["tx_datetime"] >= AS_OF - timedelta(days=DELAY_DAYS)]
    reviews = review_labels(recent.nlargest(300, "amount"), "active_learning")
    return tx, pd.concat([chargeback_labels(tx, DELAY_DAYS), reviews], ignore_index=True)


@pytest.fixture(scope="module")
def config() -> ModelConfig:
    return packaged_model_config().with_delay(DELAY_DAYS)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        yield c


def _partitioned(tx: pd.DataFrame) -> dd.DataFrame:
    """By time, as a store or daily files would hand the window over."""
    return dd.from_pandas(tx.sort_values("tx_datetime"), npartitions=6, sort=False)


@pytest.fixture(scope="module", params=[None, 1_500], ids=["all-legit", "legit-capped"])
def fits(
    request: pytest.FixtureRequest,
    world: tuple[pd.DataFrame, pd.DataFrame],
    config: ModelConfig,
    client: Client,
) -> tuple[Challenger, Challenger]:
    """Both fits on the same window; capped: a seeded sample of the legit rows (`max_legit_rows`)."""
    tx, labels = world
    if request.param is not None:
        capped = replace(config.training, max_legit_rows=request.param)
        config = config.model_copy(update={"training": capped})
    one = fit_challenger(tx, labels, AS_OF, WINDOW_DAYS, HOLDOUT_DAYS, config)
    many = fit_challenger_dask(
        client, _partitioned(tx), labels, AS_OF, WINDOW_DAYS, HOLDOUT_DAYS, config
    )
    return one, many


def test_the_features_built_on_workers_are_the_single_process_ones(
    world: tuple[pd.DataFrame, pd.DataFrame], config: ModelConfig
) -> None:
    tx, labels = world
    one = build_training_frame(tx, labels, AS_OF, WINDOW_DAYS, config.features)
    many = build_training_frame_dask(_partitioned(tx), labels, AS_OF, WINDOW_DAYS, config.features)
    many = many.compute(scheduler="sync").set_index(ID).loc[one.transaction_ids]
    columns = feature_columns(config.features)
    np.testing.assert_allclose(many[columns].to_numpy(), one.X[columns].to_numpy(), atol=1e-9)
    np.testing.assert_array_equal(many[LABEL].to_numpy(), one.y)


def test_the_dask_fit_matches_the_single_process_average_precision(
    fits: tuple[Challenger, Challenger],
) -> None:
    one, many = fits
    assert many.split.holdout.transaction_ids == one.split.holdout.transaction_ids
    assert many.split.train.transaction_ids == one.split.train.transaction_ids
    np.testing.assert_array_equal(many.split.fresh, one.split.fresh)
    assert one.split.fresh.sum() > 0
    ap_one, ap_many = (c.metrics["average_precision"] for c in fits)
    print(f"holdout AP: train_model {ap_one:.4f}, xgboost.dask {ap_many:.4f}")
    assert abs(ap_many - ap_one) <= AP_TOLERANCE
    assert (one.trainer, many.trainer) == ("xgboost", TRAINER)


def test_the_dask_model_saves_loads_and_scores_as_the_single_process_one(
    fits: tuple[Challenger, Challenger], tmp_path: Path
) -> None:
    one, many = fits
    many.model.save(tmp_path)
    loaded = FraudModel.load(tmp_path)
    X = many.split.holdout.X
    assert loaded.features == one.model.features
    score = loaded.predict_proba(X)
    np.testing.assert_allclose(score, many.model.predict_proba(X))
    assert ((score > 0) & (score < 1)).all()
    np.testing.assert_allclose(loaded.contributions(X).sum(axis=1), loaded.margin(X), atol=1e-4)


def test_a_window_too_small_raises_the_single_process_error(
    world: tuple[pd.DataFrame, pd.DataFrame], config: ModelConfig, client: Client
) -> None:
    tx, labels = world
    frame = build_training_frame(tx, labels, AS_OF, 1, config.features)
    legit = frame.y == 0
    X, y = frame.X[legit].head(50), frame.y[legit][:50]
    with pytest.raises(ValueError) as one:
        train_model(X, y, config.training)
    keys = pd.DataFrame(
        {
            "tx_datetime": pd.date_range(AS_OF, periods=len(y), freq="min"),
            ID: [str(i) for i in range(len(y))],
            LABEL: y,
        }
    )
    frame_dd = dd.from_pandas(pd.concat([keys, X.reset_index(drop=True)], axis=1), npartitions=2)
    with pytest.raises(ValueError) as many:
        settled_before = AS_OF + timedelta(days=1)  # every row settled, as in `train_model`
        train_model_dask(client, frame_dd, list(X.columns), config.training, settled_before)
    assert str(many.value) == str(one.value)


def test_with_nothing_settled_both_trainers_judge_on_the_latest_days(
    world: tuple[pd.DataFrame, pd.DataFrame], config: ModelConfig, client: Client
) -> None:
    """A window younger than the chargeback delay, every payment answered at once."""
    tx, _ = world
    answered = review_labels(tx, "active_learning")
    window = DELAY_DAYS - 2
    one = fit_challenger(tx, answered, AS_OF, window, 2, config)
    many = fit_challenger_dask(client, _partitioned(tx), answered, AS_OF, window, 2, config)
    assert many.split.holdout.transaction_ids == one.split.holdout.transaction_ids
    assert not one.split.fresh.any() and not many.split.fresh.any()
    assert abs(many.metrics["average_precision"] - one.metrics["average_precision"]) <= 0.02
