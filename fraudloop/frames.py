"""DataFrames to plain Python rows and back, fast: the batch path does both for every row.

`DataFrame.to_dict("records")` boxes each timestamp as a pandas `Timestamp` (tens of µs each);
numpy converts a whole datetime column to `datetime` objects in C, but not back (see
`datetime_array`).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_datetime64_dtype


def column_values(frame: pd.DataFrame, name: str) -> list[Any]:
    """One column as plain Python values (naive datetimes as `datetime`, NaT as None)."""
    column = frame[name]
    if is_datetime64_dtype(column.dtype):
        return list(column.to_numpy("datetime64[us]").tolist())
    return list(column.tolist())


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """`frame.to_dict("records")` with plain Python values."""
    names = [str(name) for name in frame.columns]
    columns = [column_values(frame, name) for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


_NUMPY_MAX = 10  # below this many values numpy converts faster: pandas is slow to start


def datetime_array(values: Sequence[datetime | str | None]) -> np.ndarray:
    """Naive datetimes, or ISO text of them (SQLite's), as `datetime64[ns]`; None is NaT.

    numpy reads text fast, but converts `datetime` objects one by one; pandas converts those in
    C once it has started, which costs more than a one-row request's few values (they stay on
    numpy)."""
    if len(values) < _NUMPY_MAX or isinstance(values[0], str):
        return np.array(values, dtype="datetime64[ns]")
    return pd.DatetimeIndex(values).to_numpy("datetime64[ns]")
