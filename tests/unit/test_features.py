"""Features: handbook semantics on hand-made frames, no leakage, batch == online; the model
config file they are served with."""

from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fraudloop.errors import FraudloopError
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR
from models.config import MODEL_CONFIG, load_model_config, packaged_model_config
from models.features import (
    DEFAULT_CONFIG,
    FEATURE_COLUMNS,
    HANDBOOK_FEATURES,
    FeatureConfig,
    chronological_order,
    compute_features,
)
from models.train import TrainParams
from pipeline.features import feature_config
from simulation.world import SimulationConfig, chargeback_labels, simulate

T0 = datetime(2024, 1, 1, 12, 0)
NO_LABELS = pd.DataFrame(
    {
        "transaction_id": pd.Series(dtype=str),
        "is_fraud": pd.Series(dtype=int),
        "known_at": pd.Series(dtype="datetime64[ns]"),
        "source": pd.Series(dtype=str),
    }
)


def frame(rows: list[tuple[str, datetime, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount"]
    )


def label(tx_id: str, is_fraud: int, known_at: datetime, source: str = "review") -> dict:
    return {"transaction_id": tx_id, "is_fraud": is_fraud, "known_at": known_at, "source": source}


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    tx = simulate(SimulationConfig(n_customers=150, n_terminals=300, days=45, seed=11))
    return tx, chargeback_labels(tx, DEFAULT_CONFIG.delay_days)


def test_columns_are_the_handbook_fifteen_then_fraudloop_extras() -> None:
    assert len(HANDBOOK_FEATURES) == 15
    assert FEATURE_COLUMNS[:15] == HANDBOOK_FEATURES
    assert HANDBOOK_FEATURES[3:5] == [
        "customer_id_nb_tx_1day_window",
        "customer_id_avg_amount_1day_window",
    ]


def test_customer_windows_end_at_and_include_the_current_transaction() -> None:
    tx = frame(
        [
            ("1", T0 - timedelta(days=10), "c", "t", 100.0),
            (
                "2",
                T0 - timedelta(days=1),
                "c",
                "t",
                10.0,
            ),  # exactly 1 day before: outside (t-1d, t]
            ("3", T0 - timedelta(hours=2), "c", "t", 20.0),
            ("4", T0, "c", "t", 30.0),
            ("5", T0, "other", "t", 999.0),
        ]
    )
    f = compute_features(tx.iloc[:0], tx, NO_LABELS).iloc[3]
    assert f["customer_id_nb_tx_1day_window"] == 2
    assert f["customer_id_avg_amount_1day_window"] == pytest.approx(25.0)
    assert f["customer_id_nb_tx_7day_window"] == 3
    assert f["customer_id_nb_tx_30day_window"] == 4
    assert f["customer_id_avg_amount_30day_window"] == pytest.approx(40.0)
    assert f["customer_id_hours_since_prev_tx"] == pytest.approx(2.0)
    assert f["customer_id_amount_ratio_30day"] == pytest.approx(30.0 / (130.0 / 3))


def test_ties_are_ordered_by_natural_transaction_id() -> None:
    tx = frame([("10", T0, "c", "t", 50.0), ("9", T0, "c", "t", 10.0)])
    f = compute_features(tx.iloc[:0], tx, NO_LABELS)
    assert f["customer_id_nb_tx_1day_window"].tolist() == [2.0, 1.0]
    assert f["customer_id_avg_amount_1day_window"].tolist() == [30.0, 10.0]


def test_chronological_order_sorts_by_time_then_natural_id_keeping_duplicates_in_order() -> None:
    rng = np.random.default_rng(3)
    n = 400
    tx = pd.DataFrame(
        {
            "transaction_id": [str(i) for i in rng.integers(0, 150, n)],  # duplicates too
            "tx_datetime": [T0 + timedelta(seconds=int(s)) for s in rng.integers(0, 40, n)],
        }
    )
    expected = sorted(
        range(n),
        key=lambda i: (tx["tx_datetime"][i], len(tx["transaction_id"][i]), tx["transaction_id"][i]),
    )  # sorted() is stable: equal keys keep input order
    assert chronological_order(tx).tolist() == expected


def test_terminal_windows_are_shifted_by_the_delay_and_use_known_frauds_only() -> None:
    d = DEFAULT_CONFIG.delay_days
    tx = frame(
        [
            ("a", T0 - timedelta(days=d, hours=12), "c1", "t", 10.0),  # in the 1-day window
            ("b", T0 - timedelta(days=d, hours=6), "c2", "t", 10.0),  # in the 1-day window
            ("c", T0 - timedelta(days=d - 1), "c3", "t", 10.0),  # inside the delay: not counted
            ("d", T0 - timedelta(days=d + 3), "c4", "t", 10.0),  # 7-day window only
            ("now", T0, "c5", "t", 10.0),
        ]
    )
    labels = pd.DataFrame(
        [
            label("a", 1, T0 - timedelta(hours=1), "chargeback"),
            label("b", 1, T0, "chargeback"),  # known at t: not before t, so not yet
            label("d", 1, T0 - timedelta(days=3), "chargeback"),
        ]
    )
    f = compute_features(tx.iloc[:0], tx, labels).iloc[-1]
    assert f["terminal_id_nb_tx_1day_window"] == 2
    assert f["terminal_id_risk_1day_window"] == pytest.approx(0.5)
    assert f["terminal_id_nb_tx_7day_window"] == 3
    assert f["terminal_id_risk_7day_window"] == pytest.approx(2 / 3)
    assert f["terminal_id_frauds_known_1day"] == 1  # "a" became known within the last day
    assert f["terminal_id_frauds_known_7day"] == 2


def test_latest_label_wins_and_a_terminal_without_history_has_zero_risk() -> None:
    d = DEFAULT_CONFIG.delay_days
    tx = frame(
        [
            ("a", T0 - timedelta(days=d, hours=1), "c1", "t", 10.0),
            ("now", T0, "c2", "t", 10.0),
            ("fresh", T0, "c3", "new-terminal", 10.0),
        ]
    )
    labels = pd.DataFrame(
        [
            label("a", 1, T0 - timedelta(days=2)),
            label("a", 0, T0 - timedelta(days=1), "chargeback"),  # overturned before t
        ]
    )
    f = compute_features(tx.iloc[:0], tx, labels)
    assert f.loc[1, "terminal_id_risk_1day_window"] == 0.0
    assert f.loc[1, "terminal_id_frauds_known_7day"] == 0
    assert f.loc[2, ["terminal_id_nb_tx_30day_window", "terminal_id_risk_30day_window"]].eq(0).all()


def test_result_is_aligned_with_the_new_frame(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tx, labels = world
    shuffled = tx.sample(frac=1.0, random_state=0).set_axis(np.arange(len(tx))[::-1] * 3)
    a = compute_features(tx.iloc[:0], tx, labels).set_axis(tx["transaction_id"])
    b = compute_features(tx.iloc[:0], shuffled, labels)
    assert b.index.equals(shuffled.index)
    pd.testing.assert_frame_equal(
        b.set_axis(shuffled["transaction_id"]), a.loc[shuffled["transaction_id"]]
    )


def test_later_transactions_never_change_earlier_features(
    world: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    tx, labels = world
    cut = len(tx) * 2 // 3
    full = compute_features(tx.iloc[:0], tx, labels).iloc[:cut]
    truncated = compute_features(tx.iloc[:0], tx.iloc[:cut], labels)
    later_changed = tx.copy()
    later_changed.loc[cut:, "amount"] *= 7
    later_changed.loc[cut:, "tx_datetime"] += timedelta(hours=1)
    changed = compute_features(tx.iloc[:0], later_changed, labels).iloc[:cut]
    pd.testing.assert_frame_equal(truncated, full)
    pd.testing.assert_frame_equal(changed, full)


def test_labels_known_at_or_after_t_never_change_features(
    world: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    tx, labels = world
    cut_time = tx["tx_datetime"].iloc[len(tx) // 2]
    early = tx[tx["tx_datetime"] <= cut_time]
    late_labels = labels["known_at"] >= cut_time
    flipped = labels.assign(
        is_fraud=np.where(late_labels, 1 - labels["is_fraud"], labels["is_fraud"])
    )
    reviews = pd.DataFrame([label(i, 1, cut_time) for i in tx["transaction_id"].iloc[::50]])
    base = compute_features(tx.iloc[:0], early, labels)
    pd.testing.assert_frame_equal(compute_features(tx.iloc[:0], early, flipped), base)
    pd.testing.assert_frame_equal(
        compute_features(tx.iloc[:0], early, pd.concat([labels, reviews])), base
    )


def test_a_review_label_counts_as_soon_as_it_is_known(
    world: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    tx, _ = world
    first, later = tx.iloc[0], tx[tx["terminal_id"] == tx["terminal_id"].iloc[0]].iloc[1]
    review = pd.DataFrame(
        [label(first["transaction_id"], 1, later["tx_datetime"] - timedelta(seconds=1))]
    )
    f = compute_features(tx.iloc[:0], tx, review)
    assert f.loc[later.name, "terminal_id_frauds_known_1day"] == 1
    assert f.loc[later.name, "customer_id_frauds_known_1day"] == int(
        later["customer_id"] == first["customer_id"]
    )


def test_online_with_history_equals_batch(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    tx, labels = world
    split = tx["tx_datetime"].iloc[-1] - timedelta(days=1)
    history, new = tx[tx["tx_datetime"] < split], tx[tx["tx_datetime"] >= split]
    batch = compute_features(tx.iloc[:0], tx, labels).loc[new.index]
    online = compute_features(history, new, labels)
    pd.testing.assert_frame_equal(online, batch, check_exact=True)
    recent = history[history["tx_datetime"] >= split - timedelta(days=DEFAULT_CONFIG.history_days)]
    pd.testing.assert_frame_equal(compute_features(recent, new, labels), batch, rtol=1e-9)


def test_the_packaged_model_config_holds_the_code_defaults() -> None:
    """The served features and model are the ones benchmarks and tests build from defaults."""
    config = packaged_model_config()
    assert config.features == FeatureConfig() == DEFAULT_CONFIG
    assert config.training == TrainParams()


def test_served_features_take_their_windows_from_the_file_and_the_delay_from_the_policy(
    tmp_path: Path,
) -> None:
    raw = yaml.safe_load((PACKAGE_DIR / "policy.yaml").read_text())
    raw["learning"]["chargeback_delay_days"] = 3
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(raw))
    cfg = feature_config(load_policy(tmp_path / "policy.yaml"))
    assert cfg.delay_days == 3
    assert cfg.windows == packaged_model_config().features.windows


def test_every_setting_becomes_a_flat_text_param() -> None:
    config = packaged_model_config()
    params = config.as_params()
    assert params["model_config"] == config.version
    assert params["features.windows"] == ",".join(map(str, config.features.windows))
    assert params["features.terminal_fraud_spans"].count("-") == len(
        config.features.terminal_fraud_spans
    )
    assert params["training.max_depth"] == str(config.training.max_depth)
    assert all(isinstance(v, str) for v in params.values())
    for section, settings in (("features", config.features), ("training", config.training)):
        assert {k for k in params if k.startswith(f"{section}.")} == {
            f"{section}.{name}" for name in asdict(settings)
        }


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("features", "windows", [0, 7], "features.windows.0"),
        ("features", "windows", [], "features.windows"),
        ("features", "profile_days", 1.5, "features.profile_days"),
        ("features", "terminal_fraud_spans", [[28, 14]], "terminal_fraud_spans"),
        ("features", "delay_days", 7, "learning.chargeback_delay_days"),
        ("features", "window", [1], "features.window"),
        ("training", "max_depth", True, "training.max_depth"),
        ("training", "learning_rate", "fast", "training.learning_rate"),
        ("training", "calibration_share", 1.0, "training.calibration_share"),
        ("training", "monotone_increasing", ["tx_amout"], "training.monotone_increasing"),
    ],
)
def test_a_bad_model_config_names_the_field(
    tmp_path: Path, section: str, key: str, value: object, named: str
) -> None:
    raw = yaml.safe_load(MODEL_CONFIG.read_text())
    raw[section][key] = value
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(FraudloopError, match=named):
        load_model_config(path)


def test_a_missing_model_config_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(FraudloopError, match="not found"):
        load_model_config(tmp_path / "model.yaml")
