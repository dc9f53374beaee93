"""The incoming transaction stream for batch flows: a parquet file read one time window at a time."""

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudloop.schema import TRANSACTION_COLUMNS


def read_window(source: Path, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Transactions in [start, end) as raw records; ground-truth columns never leave the file."""
    frame = pd.read_parquet(
        source,
        columns=[c for c in TRANSACTION_COLUMNS if c in _columns(source)],
        filters=[
            ("tx_datetime", ">=", pd.Timestamp(start)),
            ("tx_datetime", "<", pd.Timestamp(end)),
        ],
    )
    frame = frame.sort_values(["tx_datetime", "transaction_id"], kind="stable")
    return [_plain(r) for r in frame.to_dict("records")]


def inject_malformed(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """Corrupt copies of a few records (what a real feed sends now and then), for the demo."""
    if not records or n <= 0:
        return records
    rng = np.random.default_rng(seed)
    faults = [
        lambda r: {k: v for k, v in r.items() if k != "terminal_id"},
        lambda r: {**r, "amount": -abs(r["amount"]) - 1},
        lambda r: {**r, "amount": str(r["amount"])},
        lambda r: {**r, "merchant_note": "unexpected"},
    ]
    bad = []
    for i in range(n):
        base = records[int(rng.integers(len(records)))]
        bad.append(
            faults[i % len(faults)]({**base, "transaction_id": f"{base['transaction_id']}-bad{i}"})
        )
    return records + bad


def _columns(source: Path) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.read_schema(source).names)


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """numpy/pandas scalars to Python ones, missing values to None (strict schema types)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, float) and np.isnan(value):
            out[key] = None
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out
