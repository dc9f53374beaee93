"""The feeds batch flows read: transactions one time window at a time (a parquet file, or a JSONL
drop of raw records as a payment system sends them), and the chargeback feed's label events."""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fraudloop.errors import FraudloopError
from fraudloop.labels import HISTORY_COLUMNS, LABEL_COLUMNS
from fraudloop.schema import TRANSACTION_COLUMNS


def read_window(source: Path, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Transactions in [start, end) as raw records; ground-truth columns never leave the file."""
    _readable(source, "transactions")
    if source.suffix == ".jsonl":
        return _jsonl_window(source, start, end)
    frame = pd.read_parquet(
        source,
        columns=[c for c in TRANSACTION_COLUMNS if c in set(pq.read_schema(source).names)],
        filters=[
            ("tx_datetime", ">=", pd.Timestamp(start)),
            ("tx_datetime", "<", pd.Timestamp(end)),
        ],
    )
    frame = frame.sort_values(["tx_datetime", "transaction_id"], kind="stable")
    return [_plain(r) for r in frame.to_dict("records")]


def write_jsonl(records: list[dict[str, Any]], path: Path) -> Path:
    """Raw records as a JSONL drop (times in ISO format), as `read_window` reads them back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for record in records:
            out.write(json.dumps(record, default=_iso) + "\n")
    return path


def read_history(source: Path, until: datetime) -> pd.DataFrame:
    """The transactions before `until`, as the store keeps them (the history features read)."""
    _readable(source, "transactions")
    return pd.read_parquet(
        source, columns=HISTORY_COLUMNS, filters=[("tx_datetime", "<", pd.Timestamp(until))]
    )


def read_labels(feed: Path, now: datetime, since: datetime | None = None) -> pd.DataFrame:
    """Label events of the chargeback feed known in [since, now)."""
    _readable(feed, "chargeback feed")
    window = [("known_at", "<", pd.Timestamp(now))]
    if since is not None:
        window.append(("known_at", ">=", pd.Timestamp(since)))
    return pd.read_parquet(feed, columns=LABEL_COLUMNS, filters=window)


def _readable(path: Path, what: str) -> None:
    """A missing file is the user's to fix (`fraudloop simulate` writes the default ones)."""
    if not path.is_file():
        raise FraudloopError(
            f"{what} {path}: no such file; give another path, or run `fraudloop simulate` for"
            " the default one"
        )


def _jsonl_window(source: Path, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Records in the window, and those whose time cannot be read: the schema quarantines them
    with their reason rather than a filter dropping them unseen."""
    records = []
    for line in source.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        at = _time(record.get("tx_datetime") if isinstance(record, dict) else None)
        if at is None or start <= at < end:
            records.append(record)
    return records


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


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
