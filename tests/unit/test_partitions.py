"""A window's partitions for Dask workers: by customer, in slices no longer than the label delay,
and each worker's history of the run kept only as far as it was complete."""

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from flows.partitions import partition_of, plan, rewound, whole, worker_history
from fraudloop.errors import FraudloopError
from pipeline.features import RunHistory

START = datetime(2026, 3, 1)


def _records(n: int, every: timedelta = timedelta(hours=5)) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"tx{i}",
            "tx_datetime": START + i * every,
            "customer_id": f"c{i % 13}",
            "terminal_id": f"t{i % 7}",
            "amount": 10.0 + i,
        }
        for i in range(n)
    ]


def test_every_record_once_each_customer_in_one_partition_in_time_order() -> None:
    records = _records(200)  # 200 x 5 h: about 42 days
    slices = plan(records, 3, 7)
    parts = [p for s in slices for p in s]
    ids = [r["transaction_id"] for p in parts for r in p.records]
    assert sorted(ids) == sorted(r["transaction_id"] for r in records)
    for part in parts:
        assert {partition_of(r["customer_id"], 3) for r in part.records} == {part.index}
        times = [r["tx_datetime"] for r in part.records]
        assert times == sorted(times)
        assert not part.alone
    assert len({p.run for p in parts}) == 1


def test_slices_are_at_most_the_delay_long_and_start_with_all_before_them_stored() -> None:
    slices = plan(_records(200), 2, 7)
    assert len(slices) == 6  # 995 hours in slices of 7 days
    for k, parts in enumerate(slices):
        starts = {p.complete_before for p in parts}
        assert starts == {START + timedelta(days=7 * k)}
        times = [r["tx_datetime"] for p in parts for r in p.records]
        assert START + timedelta(days=7 * k) <= min(times)
        assert max(times) < START + timedelta(days=7 * (k + 1))
        assert {p.slice_index for p in parts} == {k}


def test_one_partition_is_the_whole_window_uncut() -> None:
    records = _records(200)
    (only,) = plan(records, 1, 7)
    assert [p.records for p in only] == [records] and only[0].alone
    assert whole(records).alone


def test_unreadable_times_and_customers_go_with_the_first_slice() -> None:
    records = _records(60)
    bad_time = {**records[0], "transaction_id": "bad-time", "tx_datetime": "not a time"}
    no_customer = {**records[-1], "transaction_id": "no-customer", "customer_id": None}
    slices = plan([*records, bad_time, no_customer], 2, 7)
    first = [r["transaction_id"] for p in slices[0] for r in p.records]
    assert "bad-time" in first
    placed = [r["transaction_id"] for s in slices for p in s for r in p.records]
    assert placed.count("no-customer") == 1


def test_the_partition_of_a_customer_is_stable_across_processes() -> None:
    assert [partition_of(f"c{i}", 4) for i in range(6)] == [3, 1, 3, 1, 2, 0]


@pytest.mark.parametrize("n", [0, -1])
def test_fewer_than_one_partition_is_refused(n: int) -> None:
    with pytest.raises(FraudloopError, match="at least 1"):
        plan(_records(3), n, 7)


def test_no_label_delay_cannot_be_partitioned_by_customer() -> None:
    with pytest.raises(FraudloopError, match="chargeback_delay_days"):
        plan(_records(3), 2, 0)
    assert plan([], 2, 0) == []


def _history(until: datetime) -> RunHistory:
    frame = pd.DataFrame(
        {"tx_datetime": pd.date_range(START, until, freq="1D", inclusive="left")}
    ).assign(transaction_id=lambda f: [f"h{i}" for i in range(len(f))])
    return RunHistory(frame=frame, since=START, until=until)


def test_rewound_drops_what_was_read_past_the_complete_part() -> None:
    read = _history(START + timedelta(days=10))
    back = rewound(read, START + timedelta(days=6))
    assert back.until == START + timedelta(days=6) and back.since == START
    assert back.frame is not None
    assert back.frame["tx_datetime"].max() == pd.Timestamp(START + timedelta(days=5))
    assert rewound(read, START + timedelta(days=12)) is read  # nothing read past it
    assert rewound(RunHistory(), START).frame is None


def test_a_worker_keeps_its_run_history_only_as_far_as_it_was_complete() -> None:
    slices = plan(_records(200), 2, 7)
    first, second = slices[0][0], slices[1][0]
    history = worker_history(first)
    assert history.frame is None  # the run's first slice on this thread: read it all
    history.frame = _history(START + timedelta(days=9)).frame
    history.since, history.until = START, START + timedelta(days=9)
    kept = worker_history(second)
    assert kept.until == first.complete_before  # complete when read: the first slice's start
    other_run = plan(_records(200), 2, 7)[1][0]
    assert worker_history(other_run).frame is None


def test_records_the_schema_will_refuse_are_placed_too() -> None:
    mixed = [
        *_records(3),
        {"transaction_id": "aware", "tx_datetime": "2026-03-02T00:00:00+02:00"},
        {"transaction_id": "naive", "tx_datetime": "2026-03-02T00:00:00"},
        "not a record",
    ]
    placed = [r for s in plan(mixed, 2, 7) for p in s for r in p.records]
    assert len(placed) == len(mixed)
    (only,) = plan([{"tx_datetime": "never"}, {"tx_datetime": None}], 2, 7)
    assert len(only) == 1 and only[0].alone
