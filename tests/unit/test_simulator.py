"""The embedded simulator: reproducible, all scenarios, well-formed sensitive fields, drift."""

import ipaddress
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulation.world import (
    CONTRACT_COLUMNS,
    HANDBOOK_RENAMES,
    SimulationConfig,
    chargeback_labels,
    load_handbook,
    simulate,
)

SMALL = SimulationConfig(n_customers=300, n_terminals=600, days=25, seed=5)


@pytest.fixture(scope="module")
def tx() -> pd.DataFrame:
    return simulate(SMALL)


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number][::-1]
    doubled = [d * 2 - 9 if d * 2 > 9 else d * 2 for d in digits[1::2]]
    return (sum(digits[::2]) + sum(doubled)) % 10 == 0


def test_same_seed_same_data_other_seed_other_data(tx: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate(SMALL), tx)
    other = simulate(SimulationConfig(n_customers=300, n_terminals=600, days=25, seed=6))
    assert not other["amount"].head(100).equals(tx["amount"].head(100))


def test_contract_columns_sorted_by_time_with_unique_ids(tx: pd.DataFrame) -> None:
    assert list(tx.columns) == [*CONTRACT_COLUMNS, "is_fraud", "fraud_scenario"]
    assert tx["transaction_id"].is_unique
    assert tx["tx_datetime"].is_monotonic_increasing
    assert tx["tx_datetime"].min() >= pd.Timestamp(SMALL.start)
    assert tx["tx_datetime"].max() < pd.Timestamp(SMALL.start) + timedelta(days=SMALL.days)
    assert (tx["amount"] >= 0).all()


def test_all_three_scenarios_with_their_signatures(tx: pd.DataFrame) -> None:
    assert set(tx["fraud_scenario"]) == {0, 1, 2, 3}
    assert (tx["is_fraud"] == (tx["fraud_scenario"] > 0)).all()
    assert (tx.loc[tx["fraud_scenario"] == 1, "amount"] > SMALL.amount_fraud_threshold).all()
    assert (tx.loc[tx["fraud_scenario"] == 0, "amount"] <= SMALL.amount_fraud_threshold).all()
    compromised = tx[tx["fraud_scenario"] == 2]
    assert compromised["terminal_id"].nunique() <= SMALL.compromised_terminals_per_day * SMALL.days


def test_sensitive_fields_are_well_formed_and_stable_per_customer(tx: pd.DataFrame) -> None:
    assert tx["card_number"].str.fullmatch(r"\d{16}").all()
    assert all(luhn_ok(c) for c in tx["card_number"].unique())
    assert tx.groupby("customer_id")[["card_number", "email"]].nunique().eq(1).all().all()
    assert tx["email"].map(lambda e: re.fullmatch(r"[\w.]+@[\w.]+\.\w+", e) is not None).all()
    for ip in tx["ip_address"].unique()[:200]:
        assert isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address)


def test_drift_changes_spending_from_its_start_day(tx: pd.DataFrame) -> None:
    drifted = simulate(replace(SMALL, drift=1.0, drift_start_day=15))
    split = pd.Timestamp(SMALL.start) + timedelta(days=15)

    def legit_mean(frame: pd.DataFrame, after: bool) -> float:
        rows = frame[(frame["tx_datetime"] >= split) == after]
        return float(rows.loc[rows["fraud_scenario"] == 0, "amount"].mean())

    assert legit_mean(drifted, after=False) == pytest.approx(legit_mean(tx, after=False), rel=0.05)
    assert legit_mean(drifted, after=True) > 1.5 * legit_mean(tx, after=True)
    assert drifted["is_fraud"].mean() != tx["is_fraud"].mean()


def test_card_testing_adds_bursts_of_small_frauds_and_changes_nothing_else(
    tx: pd.DataFrame,
) -> None:
    start = 12
    tested = simulate(replace(SMALL, card_testing_per_day=4, drift_start_day=start))
    bursts = tested[tested["fraud_scenario"] == 4]  # noqa: PLR2004 - the card-testing scenario
    days = (bursts["tx_datetime"] - pd.Timestamp(SMALL.start)).dt.days
    assert len(bursts) == 4 * SMALL.card_testing_burst * (SMALL.days - start)
    assert days.min() == start and bursts["is_fraud"].all()
    low, high = SMALL.card_testing_amounts
    assert bursts["amount"].between(low, high).all()
    spans = bursts.groupby([days, "customer_id"])["tx_datetime"].agg(["min", "max", "size"])
    assert (spans["max"] - spans["min"] <= timedelta(hours=1)).all()
    assert (spans["size"] % SMALL.card_testing_burst == 0).all()
    columns = ["tx_datetime", "customer_id", "terminal_id", "amount", "fraud_scenario"]
    rest = tested[tested["fraud_scenario"] != 4][columns].reset_index(drop=True)  # noqa: PLR2004
    pd.testing.assert_frame_equal(rest, tx[columns].reset_index(drop=True))


def test_chargeback_labels_arrive_after_the_delay_for_both_classes(tx: pd.DataFrame) -> None:
    labels = chargeback_labels(tx, delay_days=7)
    assert list(labels.columns) == ["transaction_id", "is_fraud", "known_at", "source"]
    assert (labels["known_at"] - tx["tx_datetime"].to_numpy() == timedelta(days=7)).all()
    assert labels["is_fraud"].tolist() == tx["is_fraud"].tolist()
    assert set(labels["source"]) == {"chargeback"}


def test_load_handbook_renames_to_the_contract(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {
            "TRANSACTION_ID": [0, 1],
            "TX_DATETIME": pd.to_datetime(["2018-04-01 00:00:31", "2018-04-01 00:02:10"]),
            "CUSTOMER_ID": [596, 4961],
            "TERMINAL_ID": [3156, 3412],
            "TX_AMOUNT": [57.16, 81.51],
            "TX_TIME_SECONDS": [31, 130],
            "TX_TIME_DAYS": [0, 0],
            "TX_FRAUD": np.array([0, 1], dtype="int8"),
            "TX_FRAUD_SCENARIO": np.array([0, 2], dtype="int8"),
        }
    )
    raw.to_parquet(tmp_path / "hb.parquet")
    frame = load_handbook(tmp_path / "hb.parquet")
    assert list(frame.columns) == [*CONTRACT_COLUMNS, "is_fraud", "fraud_scenario"]
    assert frame["transaction_id"].tolist() == ["0", "1"]
    assert frame["customer_id"].tolist() == ["596", "4961"]
    assert frame["card_number"].isna().all()
    assert frame["is_fraud"].tolist() == [0, 1]
    assert set(HANDBOOK_RENAMES.values()) <= set(frame.columns)
