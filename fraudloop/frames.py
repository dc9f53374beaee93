"""DataFrames to plain Python rows, fast: the batch path turns every scored frame into rows.

`DataFrame.to_dict("records")` boxes each timestamp as a pandas `Timestamp` (tens of µs each);
numpy converts a whole datetime column to `datetime` objects in C.
"""

from typing import Any

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
