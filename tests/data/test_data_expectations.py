"""Schema and value expectations on the data fraudloop learns from: the simulator and the handbook."""

import hashlib
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from fraudloop.feed import read_window
from fraudloop.schema import TRANSACTION_COLUMNS, validate_batch
from simulation.world import SimulationConfig, load_handbook, simulate

HANDBOOK = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "handbook-2018-04-01_2018-08-31.parquet"
)
HANDBOOK_SHA256 = "0702c5fe0c553d21cfa781526ba40b6c70d8486a94f11e911b9f72407ca6fa2a"


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    return simulate(SimulationConfig(n_customers=300, n_terminals=600, days=20))


def test_every_simulated_transaction_passes_the_door(world: pd.DataFrame) -> None:
    valid, rejected = validate_batch(world[TRANSACTION_COLUMNS].to_dict("records"))
    assert not rejected and len(valid) == len(world)


def test_simulated_values_are_plausible(world: pd.DataFrame) -> None:
    assert world["transaction_id"].is_unique
    assert world["tx_datetime"].is_monotonic_increasing
    assert (world["amount"] >= 0).all()
    assert (
        0.002 < world["is_fraud"].mean() < 0.1
    )  # compromise counts per day do not shrink with the world
    assert set(world["fraud_scenario"]) <= {0, 1, 2, 3}
    assert ((world["fraud_scenario"] > 0) == (world["is_fraud"] == 1)).all()
    assert world.loc[world["fraud_scenario"] == 1, "amount"].gt(220).all()
    assert world["card_number"].str.fullmatch(r"\d{16}").all()
    assert world.groupby("customer_id")["card_number"].nunique().eq(1).all()


def test_the_stream_never_carries_ground_truth(world: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "world.parquet"
    world.to_parquet(path, index=False)
    start = world["tx_datetime"].min() + timedelta(days=3)
    records = read_window(path, start, start + timedelta(hours=6))
    assert records and set(records[0]) == set(TRANSACTION_COLUMNS)
    assert all(start <= r["tx_datetime"] < start + timedelta(hours=6) for r in records)


@pytest.mark.skipif(
    not HANDBOOK.exists(),
    reason=f"the handbook data set is missing: {HANDBOOK} (the Fraud Detection Handbook's "
    "1,466,282 simulated transactions; it lives beside the repo, in ../shared/data)",
)
def test_handbook_file_is_the_published_one() -> None:
    assert hashlib.sha256(HANDBOOK.read_bytes()).hexdigest() == HANDBOOK_SHA256
    frame = load_handbook(HANDBOOK)
    assert len(frame) == 1_466_282
    assert frame["customer_id"].nunique() == 4_989
    assert abs(frame["is_fraud"].mean() - 0.0083) < 0.0005
