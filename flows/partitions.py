"""A scoring window split for Dask workers so that every partition's features are one process's.

By customer: a customer's features (spending windows, profile, frauds known on the card) read
only that customer's transactions, and they all land in one partition. A terminal's features
read other customers' transactions too, but only those older than the label delay
(`FeatureConfig.delay_days`: the handbook's terminal windows end that long ago) or with a known
label (stored before the run). So the window is cut into time slices no longer than the delay:
the slices run one after another, the partitions of a slice at once, and each slice starts with
every transaction before it stored, the other partitions' included. A window of one partition
is one slice (one process needs no cut).
"""

import threading
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from fraudloop.errors import FraudloopError
from pipeline.features import RunHistory


@dataclass(frozen=True)
class Partition:
    """Transactions of one slice and one share of the customers, in the window's order.

    `run` names the window's run: a worker keeps the history it read for it between slices
    (`worker_history`); every transaction before `complete_before` is stored when it starts.
    """

    run: str
    slice_index: int
    index: int
    complete_before: datetime | None
    records: list[dict[str, Any]]

    @property
    def alone(self) -> bool:
        """The whole window in one partition: nothing to share with other workers."""
        return self.complete_before is None

    def __dask_tokenize__(self) -> tuple[str, int, int]:
        """Dask names a task by hashing its arguments; hashing the records costs more than
        scoring them."""
        return self.run, self.slice_index, self.index


def whole(records: list[dict[str, Any]]) -> Partition:
    """The window as one partition (one process)."""
    return Partition(uuid.uuid4().hex, 0, 0, None, records)


def plan(records: list[dict[str, Any]], n: int, slice_days: int) -> list[list[Partition]]:
    """The window as slices of at most `slice_days` days (in time order), each split into at
    most `n` partitions by customer (empty ones left out). Records whose time or customer cannot
    be read go with the first slice or partition: validation quarantines them there."""
    if n < 1:
        raise FraudloopError(f"partitions: need at least 1, got {n}")
    if not records:
        return []
    if n == 1:
        return [[whole(records)]]
    if slice_days < 1:
        raise FraudloopError(
            "learning.chargeback_delay_days is 0: terminal features then read other customers' "
            "transactions of the same moment, so a window cannot be partitioned by customer; "
            "set FRAUDLOOP_DASK_WORKERS=0"
        )
    times = _times(records)
    first = times.min()
    if pd.isna(first):  # no time to cut by: validation quarantines them all
        return [[whole(records)]]
    run = uuid.uuid4().hex
    span = np.timedelta64(timedelta(days=slice_days))
    since_first = times.fillna(first).to_numpy("datetime64[ns]") - first.to_datetime64()
    slot = (since_first // span).astype(int)
    share = [
        partition_of(r.get("customer_id") if isinstance(r, dict) else None, n) for r in records
    ]
    grouped: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for record, s, p in zip(records, slot, share, strict=True):
        grouped.setdefault((int(s), p), []).append(record)
    slices = sorted({s for s, _ in grouped})
    return [
        [
            Partition(run, s, p, (first + s * timedelta(days=slice_days)).to_pydatetime(), rows)
            for p in range(n)
            if (rows := grouped.get((s, p)))
        ]
        for s in slices
    ]


def _times(records: list[dict[str, Any]]) -> pd.Series:
    """Each record's time as the schema will read it, NaT where it cannot be read; a file's
    times at once, a drop's raw values (text, zones) one by one."""
    values = [r.get("tx_datetime") if isinstance(r, dict) else None for r in records]
    if all(isinstance(v, datetime) and v.tzinfo is None for v in values):
        return pd.Series(pd.to_datetime(values))
    return pd.Series([_time(v) for v in values], dtype="datetime64[ns]")


def _time(value: Any) -> pd.Timestamp:
    try:
        at = pd.Timestamp(value)
    except (TypeError, ValueError):
        return pd.NaT
    return at.tz_convert(None) if at.tzinfo is not None else at


def partition_of(customer_id: object, n: int) -> int:
    """A customer's partition, the same in every process (Python's `hash` is salted per
    process)."""
    return zlib.crc32(str(customer_id).encode()) % n


_held = threading.local()


def worker_history(part: Partition) -> RunHistory:
    """This thread's history of the partition's run, for the slices it scores one after another.

    A partition reads the stored history as one process does (`RunHistory`: the first window
    once, then what was stored since), but while it reads, the other partitions of its slice are
    still storing theirs: rows read past the start of its slice may lack some of them (harmless
    there: see the module's docstring, but not for later slices). So the history is kept only as
    far as it was complete when read, and the next slice reads on from there. One run is kept
    per thread (a worker process outlives a run).
    """
    held: tuple[str, RunHistory, datetime | None] | None = getattr(_held, "run", None)
    if held is None or held[0] != part.run:
        history = RunHistory()
    else:
        history = rewound(held[1], held[2])
    _held.run = (part.run, history, part.complete_before)
    return history


def rewound(history: RunHistory, before: datetime | None) -> RunHistory:
    """`history` without what it read from `before` on: the next window reads it again."""
    if before is None or history.frame is None or history.until is None:
        return RunHistory()
    if history.until <= before:
        return history
    times = history.frame["tx_datetime"].to_numpy()
    kept = history.frame[times < np.datetime64(before)].reset_index(drop=True)
    return RunHistory(frame=kept, since=history.since, until=before)
