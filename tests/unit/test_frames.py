"""The batch path's fast row conversion and redaction give what the per-row versions give."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from fraudloop.frames import datetime_array, records
from fraudloop.redaction import redact, redact_frame
from fraudloop.simulator import SimulationConfig, simulate


def _frame() -> pd.DataFrame:
    frame = simulate(SimulationConfig(n_customers=30, n_terminals=40, days=3, seed=7))
    frame.loc[frame.index[0], "email"] = None  # missing sensitive values stay missing
    frame.loc[frame.index[1], "tx_datetime"] += pd.Timedelta(microseconds=123)
    return frame


def test_records_equal_to_dict_with_plain_python_values() -> None:
    frame = _frame()
    rows = records(frame)
    assert rows == frame.to_dict("records")
    assert type(rows[0]["tx_datetime"]).__name__ == "datetime"  # not a pandas Timestamp
    assert all(not isinstance(v, np.generic) for row in rows[:50] for v in row.values())


def test_redact_frame_equals_redact_per_row() -> None:
    frame = _frame()
    fast = redact_frame(frame)
    assert fast == [redact(row) for row in frame.to_dict("records")]
    assert list(fast[0]) == list(redact(frame.iloc[0].to_dict()))  # same keys, same order


def test_redact_frame_without_sensitive_columns_masks_nothing() -> None:
    frame = _frame().drop(columns=["card_number", "email", "ip_address"])
    assert redact_frame(frame) == [redact(row) for row in frame.to_dict("records")]


@pytest.mark.parametrize("as_text", [False, True])  # SQLite's stored text of a time
@pytest.mark.parametrize("n", [0, 1, 9, 10, 500])  # numpy below 10 values, pandas from 10
def test_datetime_array_equals_numpy_per_value(n: int, as_text: bool) -> None:
    start = datetime(2018, 4, 1, 0, 0, 14)
    times: list[datetime | None] = [start + timedelta(seconds=37.123457 * i) for i in range(n)]
    if n > 1:
        times[n // 2] = None  # a missing time is NaT
    values = [t.isoformat(" ", "microseconds") if t and as_text else t for t in times]
    got = datetime_array(values)
    assert got.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(got, np.array(times, dtype="datetime64[ns]"))
