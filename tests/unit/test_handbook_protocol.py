"""The handbook protocol on hand-made frames: windows, the test-set rule, CP@k with removal."""

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import handbook as hb
from benchmarks.handbook import Window, check_inside, metrics
from fraudloop.errors import FraudloopError

# The published data set, kept beside the repo (../shared/data), not in it: a clone alone skips.
HANDBOOK_DATA = (
    Path(__file__).resolve().parents[3] / "shared/data/handbook-2018-04-01_2018-08-31.parquet"
)
needs_handbook_data = pytest.mark.skipif(
    not HANDBOOK_DATA.exists(),
    reason=f"the handbook data set is missing: {HANDBOOK_DATA} (the Fraud Detection Handbook's "
    "1,466,282 simulated transactions; it lives beside the repo, in ../shared/data)",
)
START = datetime(2024, 3, 1)
W = Window(START, train_days=2, delay_days=2, test_days=3)  # train 1-2, delay 3-4, test 5-7


def tx(rows: list[tuple[int, str, int]]) -> pd.DataFrame:
    """(day offset from START, customer, is_fraud) -> rows at noon of that day."""
    return pd.DataFrame(
        {
            "tx_datetime": [START + timedelta(days=d, hours=12) for d, _, _ in rows],
            "customer_id": [c for _, c, _ in rows],
            "is_fraud": [f for _, _, f in rows],
        }
    )


def test_window_periods_and_prequential_folds_never_reach_the_test_days() -> None:
    assert (W.train_end, W.test_start, W.test_end) == (
        START + timedelta(days=2),
        START + timedelta(days=4),
        START + timedelta(days=7),
    )
    folds = Window(START, 7, 7, 7).folds(4)
    assert [f.train_start for f in folds] == [START - timedelta(days=d) for d in (14, 21, 28, 35)]
    assert all(f.test_end <= START + timedelta(days=7) for f in folds)  # labels known by test


@pytest.mark.parametrize(
    ("fraud_day", "first_test_day_without_c"),
    [
        (0, 4),  # fraud in the training period: c is never tested
        (1, 4),
        (2, 5),  # delay day 0: known from test day 1 on (test day i knows days < train_end + i)
        (3, 6),  # delay day 1: known from test day 2 on
        (4, None),  # on test day 0 itself: not known before the test week ends
    ],
)
def test_known_compromised_customers_leave_the_test_days(
    fraud_day: int, first_test_day_without_c: int | None
) -> None:
    rows = [(d, "c", int(d == fraud_day)) for d in range(7)] + [(d, "k", 0) for d in range(7)]
    test = hb.test_rows(tx(rows), W)
    days_with_c = sorted((test.loc[test["customer_id"] == "c", "tx_datetime"] - START).dt.days)
    expected_end = first_test_day_without_c if first_test_day_without_c is not None else 7
    assert days_with_c == list(range(4, expected_end))
    assert sorted((test.loc[test["customer_id"] == "k", "tx_datetime"] - START).dt.days) == [
        4,
        5,
        6,
    ]


def test_frauds_before_the_training_period_do_not_exclude() -> None:
    frame = tx([(-1, "c", 1), (4, "c", 0), (5, "c", 1)])
    assert len(hb.test_rows(frame, W)) == 2
    assert hb.train_rows(frame, W).empty


def test_cp_at_k_removes_customers_detected_on_earlier_test_days() -> None:
    rows = tx(
        [
            (4, "A", 1),
            (4, "B", 0),
            (5, "A", 1),  # A found on day 4: gone on day 5, so B's 0 is the top-1
            (5, "B", 0),
            (6, "C", 1),
        ]
    )
    score = np.array([0.9, 0.1, 0.9, 0.5, 0.2])
    result = metrics(rows, score)
    assert result["cp100"] == pytest.approx((1 / 100 + 0 + 1 / 100) / 3)
    assert result["auc"] == pytest.approx(5 / 6)  # 3 frauds x 2 legit, one pair misordered
    assert set(result) == {"auc", "ap", "cp100"}


def test_windows_outside_the_data_are_refused() -> None:
    frame = tx([(d, "c", 0) for d in range(7)])
    check_inside(frame, [W])
    with pytest.raises(FraudloopError, match="train_start 2024-03-02"):
        check_inside(frame, [W.shifted(1)])


@needs_handbook_data
def test_the_default_window_gives_the_handbooks_test_set_size() -> None:
    """The published protocol's test set on the shared data: 58,264 transactions."""
    raw = pd.read_parquet(HANDBOOK_DATA, columns=["TX_DATETIME", "CUSTOMER_ID", "TX_FRAUD"])
    frame = raw.set_axis(["tx_datetime", "customer_id", "is_fraud"], axis=1)
    assert len(hb.test_rows(frame, Window(datetime(2018, 7, 25)))) == 58_264


def test_the_ceiling_oracle_sees_a_terminal_compromise_only_after_the_delay() -> None:
    from benchmarks.handbook_ceiling import revealable

    t = START + timedelta(days=20)
    rows = [  # (time, terminal, is_fraud, scenario)
        (t - timedelta(days=9), "old", 1, 2),  # its label is known 2 days before t
        (t - timedelta(days=3), "fresh", 1, 2),  # its label arrives 4 days after t
        (t - timedelta(days=40), "ended", 1, 2),  # a compromise over long ago
        (t, "old", 1, 2),
        (t, "fresh", 1, 2),
        (t, "ended", 1, 2),
        (t, "any", 1, 1),  # the amount alone shows it
        (t, "any", 0, 0),
    ]
    frame = pd.DataFrame(rows, columns=["tx_datetime", "terminal_id", "is_fraud", "fraud_scenario"])
    shown = revealable(frame, frame.iloc[3:], delay_days=7)
    assert shown.tolist() == [True, False, False, True, False]
