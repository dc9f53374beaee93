"""The batch path's fast row conversion and redaction give what the per-row versions give, and
redaction leaves a reviewer the masked values only."""

import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from fraudloop.frames import datetime_array, records
from fraudloop.redaction import SENSITIVE_FIELDS, find_sensitive, redact, redact_frame
from simulation.world import SimulationConfig, simulate


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


def test_redact_frame_masks_each_sensitive_field_and_passes_the_others_as_text() -> None:
    at = datetime(2026, 3, 1, 12, 0)
    frame = pd.DataFrame(
        {
            "transaction_id": ["tx-1", "tx-2", "tx-3"],
            "tx_datetime": [at, at + timedelta(microseconds=123), at + timedelta(hours=12)],
            "customer_id": ["c1", "c2", "c3"],
            "amount": [12.3456, 0.0, 1000.0],
            "card_number": ["4111111111111234", "4111-1111-1111-9876", None],
            "email": ["jane.doe@ex.com", "no-at-sign", None],
            "ip_address": ["203.0.113.77", "10.0.0", None],  # the second is no IPv4 address
            "is_fraud": [0, 1, 0],
        }
    )
    columns = ["transaction_id", "tx_datetime", "customer_id", "amount", "is_fraud"]
    masks = ["card", "email_domain", "ip_prefix"]
    expected = [
        # the last four digits, the domain, the first two octets
        ["tx-1", "2026-03-01T12:00:00", "c1", 12.35, 0, "**** 1234", "***@ex.com", "203.0.x.x"],
        # separators go before the digits are cut; nothing is shown of what is not understood
        ["tx-2", "2026-03-01T12:00:00.000123", "c2", 0.0, 1, "**** 9876", None, None],
        ["tx-3", "2026-03-02T00:00:00", "c3", 1000.0, 0, None, None, None],  # missing stays so
    ]
    rows = redact_frame(frame)
    assert [list(row) for row in rows] == [columns + masks] * 3
    assert [list(row.values()) for row in rows] == expected


def test_no_raw_sensitive_value_survives_redaction_of_a_batch() -> None:
    frame = _frame()
    rows = redact_frame(frame)
    for raw, shown in zip(frame.to_dict("records"), rows, strict=True):
        assert not set(SENSITIVE_FIELDS) & set(shown)
        assert shown["card"] == f"**** {raw['card_number'][-4:]}"
        email = raw["email"]
        assert shown["email_domain"] == (email and f"***@{email.split('@')[1]}")
        assert shown["ip_prefix"] == ".".join([*raw["ip_address"].split(".")[:2], "x", "x"])
        text = json.dumps(shown)
        assert raw["card_number"] not in text and raw["card_number"][:12] not in text
        assert raw["ip_address"] not in text
        assert email is None or email.split("@")[0] + "@" not in text
        unchanged = ("transaction_id", "customer_id", "terminal_id", "is_fraud", "fraud_scenario")
        assert {k: shown[k] for k in unchanged} == {k: raw[k] for k in unchanged}
        assert shown["tx_datetime"] == raw["tx_datetime"].isoformat()
        assert shown["amount"] == round(raw["amount"], 2)
    assert find_sensitive(json.dumps(rows)) == []


def test_redact_frame_without_sensitive_columns_masks_nothing() -> None:
    frame = _frame().drop(columns=["card_number", "email", "ip_address"])
    rows = redact_frame(frame)
    assert rows == [redact(row) for row in frame.to_dict("records")]
    assert {(r["card"], r["email_domain"], r["ip_prefix"]) for r in rows} == {(None, None, None)}


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
