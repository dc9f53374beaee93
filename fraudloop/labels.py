"""Transaction history and labels as the features see them: only what was known at the time."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from fraudloop.frames import records
from fraudloop.storage import Label, TransactionRow, insert_ignore, read_frame

HISTORY_TYPES = {
    "transaction_id": "object",
    "tx_datetime": "datetime64[ns]",
    "customer_id": "object",
    "terminal_id": "object",
    "amount": "float64",
}
LABEL_TYPES = {
    "transaction_id": "object",
    "is_fraud": "int64",
    "known_at": "datetime64[ns]",
    "source": "object",
}
HISTORY_COLUMNS = list(HISTORY_TYPES)
LABEL_COLUMNS = list(LABEL_TYPES)


def add_transactions(session: Session, tx: pd.DataFrame) -> int:
    return insert_ignore(session, TransactionRow, records(tx[HISTORY_COLUMNS]))


def add_labels(session: Session, rows: Iterable[dict[str, Any]]) -> int:
    return insert_ignore(session, Label, list(rows))


def history(
    session: Session,
    since: datetime,
    until: datetime,
    customers: Iterable[str] | None = None,
    terminals: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Stored transactions in [since, until), optionally only those of some customers/terminals."""
    window = {"since": since, "until": until}
    if customers is None or terminals is None:
        return _typed_frame(session, _HISTORY, window, HISTORY_TYPES)
    entities = {"customers": list(customers), "terminals": list(terminals)}
    return _typed_frame(session, _HISTORY_OF, window | entities, HISTORY_TYPES)


def history_labels(
    session: Session,
    since: datetime,
    until: datetime,
    customers: Iterable[str],
    terminals: Iterable[str],
    also: Iterable[str],
    known_before: datetime,
) -> pd.DataFrame:
    """Label events of the transactions `history` returns, and of `also`: all that features
    can use, without reading every label ever stored (which made online scoring O(labels))."""
    params = {
        "since": since,
        "until": until,
        "customers": list(customers),
        "terminals": list(terminals),
        "also": list(also),
        "known_before": known_before,
    }
    return _typed_frame(session, _HISTORY_LABELS, params, LABEL_TYPES)


def _typed_frame(
    session: Session, stmt: Any, params: dict[str, Any], types: dict[str, str]
) -> pd.DataFrame:
    """Rows as a frame of known column types: pandas' type inference over the rows cost more
    than the query for the few rows of an online request."""
    result = session.connection().execute(stmt, params)
    names = list(result.keys())
    columns = list(zip(*result.all(), strict=True)) or [()] * len(names)
    return pd.DataFrame(
        {
            name: np.array(values, dtype=types[name])
            for name, values in zip(names, columns, strict=True)
        },
        copy=False,
    )


# Built once with bound parameters: building them per call cost more than running them online.
_IN_WINDOW = (
    TransactionRow.tx_datetime >= bindparam("since"),
    TransactionRow.tx_datetime < bindparam("until"),
)
_OF_ENTITIES = or_(
    TransactionRow.customer_id.in_(bindparam("customers", expanding=True)),
    TransactionRow.terminal_id.in_(bindparam("terminals", expanding=True)),
)
_HISTORY = select(*[getattr(TransactionRow, c) for c in HISTORY_COLUMNS]).where(*_IN_WINDOW)
_HISTORY_OF = _HISTORY.where(_OF_ENTITIES)
_HISTORY_LABELS = select(*[getattr(Label, c) for c in LABEL_COLUMNS]).where(
    or_(
        Label.transaction_id.in_(
            select(TransactionRow.transaction_id).where(*_IN_WINDOW, _OF_ENTITIES)
        ),
        Label.transaction_id.in_(bindparam("also", expanding=True)),
    ),
    Label.known_at < bindparam("known_before"),
)


def labels(session: Session, known_before: datetime | None = None) -> pd.DataFrame:
    """Every label event known before a moment (latest source wins when features combine them)."""
    stmt = select(*[getattr(Label, c) for c in LABEL_COLUMNS])
    if known_before is not None:
        stmt = stmt.where(Label.known_at < known_before)
    frame = read_frame(session, stmt)
    frame["known_at"] = pd.to_datetime(frame["known_at"])
    return frame
