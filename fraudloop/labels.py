"""Transaction history and labels as the features see them: only what was known at the time."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    CompoundSelect,
    DateTime,
    Select,
    String,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from fraudloop.frames import datetime_array, records
from fraudloop.storage import Decision, Label, TransactionRow, insert_ignore, one_of, read_frame

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
CHARGEBACK_ACTOR = "chargeback-feed"  # who recorded a chargeback label
DECLINED = ("auto_reject", "human_reject")  # final decisions that refused a payment
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
    statements = _statements(session.get_bind().dialect.name)
    if customers is None or terminals is None:
        return _typed_frame(session, statements.history, window, HISTORY_TYPES)
    entities = {"customers": list(customers), "terminals": list(terminals)}
    return _typed_frame(session, statements.history_of, window | entities, HISTORY_TYPES)


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
    stmt = _statements(session.get_bind().dialect.name).labels_of
    return _typed_frame(session, stmt, params, LABEL_TYPES)


def window_labels(
    session: Session,
    since: datetime,
    until: datetime,
    also: Iterable[str],
    known_before: datetime,
) -> pd.DataFrame:
    """Label events of every transaction stored in [since, until), and of `also`: what
    `history_labels` reads for a history of every customer and terminal (a run's, see
    `pipeline.features.RunHistory`). Found from the transactions' time index, not by joining
    every label: a long window reads only its own."""
    params = {"since": since, "until": until, "also": list(also), "known_before": known_before}
    stmt = _statements(session.get_bind().dialect.name).labels_in_window
    return _typed_frame(session, stmt, params, LABEL_TYPES)


def _typed_frame(
    session: Session, stmt: Any, params: dict[str, Any], types: dict[str, str]
) -> pd.DataFrame:
    """Rows as a frame of known column types: pandas' type inference over the rows cost more
    than the query for the few rows of an online request."""
    result = session.connection().execute(stmt, params)
    names = list(result.keys())
    with result:  # the driver's own rows: SQLAlchemy's row objects would only be unpacked
        columns = list(zip(*result.cursor.fetchall(), strict=True)) or [()] * len(names)
    return pd.DataFrame(
        {
            name: datetime_array(values)
            if types[name] == "datetime64[ns]"
            else np.array(values, dtype=types[name])
            for name, values in zip(names, columns, strict=True)
        },
        copy=False,
    )


@dataclass(frozen=True)
class _Statements:
    history: Select[Any]
    history_of: Select[Any]  # of some customers and terminals
    labels_of: Select[Any]  # of their transactions, and of some more
    labels_in_window: CompoundSelect[Any]  # of every transaction in the window, and of some more


@cache
def _statements(dialect: str) -> _Statements:
    """Built once per dialect, with bound parameters: building them per call cost more than
    running them online.

    Lists of ids are bound as `storage.one_of` binds them (one array on PostgreSQL, not a
    parameter each). SQLite's times come back as their stored text, which numpy reads
    (`frames.datetime_array`) far faster than SQLAlchemy makes `datetime` objects of them.
    """

    def columns(table: type[TransactionRow] | type[Label], names: list[str]) -> list[Any]:
        return [
            type_coerce(getattr(table, name), String).label(name)
            if dialect == "sqlite" and isinstance(getattr(table, name).type, DateTime)
            else getattr(table, name)
            for name in names
        ]

    in_window = (
        TransactionRow.tx_datetime >= bindparam("since"),
        TransactionRow.tx_datetime < bindparam("until"),
    )
    of_entities = or_(
        one_of(TransactionRow.customer_id, "customers", dialect),
        one_of(TransactionRow.terminal_id, "terminals", dialect),
    )
    history = select(*columns(TransactionRow, HISTORY_COLUMNS)).where(*in_window)
    known = Label.known_at < bindparam("known_before")
    label_columns = columns(Label, LABEL_COLUMNS)
    labels_of = select(*label_columns).where(
        or_(
            Label.transaction_id.in_(
                select(TransactionRow.transaction_id).where(*in_window, of_entities)
            ),
            one_of(Label.transaction_id, "also", dialect),
        ),
        known,
    )
    labels_in_window = union(
        select(*label_columns)
        .join(TransactionRow, TransactionRow.transaction_id == Label.transaction_id)
        .where(*in_window, known),
        select(*label_columns).where(one_of(Label.transaction_id, "also", dialect), known),
    )
    return _Statements(history, history.where(of_entities), labels_of, labels_in_window)


def labels(session: Session, known_before: datetime | None = None) -> pd.DataFrame:
    """Every label event known before a moment (latest source wins when features combine them)."""
    stmt = select(*[getattr(Label, c) for c in LABEL_COLUMNS])
    if known_before is not None:
        stmt = stmt.where(Label.known_at < known_before)
    frame = read_frame(session, stmt)
    frame["known_at"] = pd.to_datetime(frame["known_at"])
    return frame


@dataclass(frozen=True)
class CardFlag:
    """Why a card counts as flagged: its latest fraud label or declined payment in the window."""

    at: datetime
    cause: str  # "fraud label (chargeback)", "payment declined (human_reject)", ...


def flagged_cards(
    session: Session,
    customers: Iterable[str],
    exclude: Iterable[str],
    since: datetime,
    until: datetime,
) -> dict[str, CardFlag]:
    """The customers (a customer is a card: the store keeps no card key) with a fraud label
    known, or a payment declined automatically or by a reviewer, in [since, until): the fallback
    card rule. A later legit label of the same payment takes its flag back (the latest label
    wins). `exclude`: the batch's own transactions, so that a batch retried routes as it did;
    `until` is strict, so that the chunks of one run (one `now`) do not flag each other.

    One query for the batch; the few flags it finds are sifted here, not the customers' whole
    history against the batch's ids in the database."""
    params = {"customers": list(customers), "since": since, "until": until}
    skip = set(exclude)
    found: dict[str, CardFlag] = {}
    rows = session.execute(_flagged(session.get_bind().dialect.name), params)
    for customer, transaction_id, at, kind, what in rows:
        if transaction_id in skip or (customer in found and at <= found[customer].at):
            continue
        cause = f"fraud label ({what})" if kind == "label" else f"payment declined ({what})"
        found[customer] = CardFlag(at, cause)
    return found


@cache
def _flagged(dialect: str) -> CompoundSelect[Any]:
    """`flagged_cards`' statement, built once per dialect (ids bound as `storage.one_of` does)."""
    since = bindparam("since", type_=DateTime)
    until = bindparam("until", type_=DateTime)
    legit = aliased(Label)

    def not_taken_back(transaction_id: Any, at: Any) -> Any:
        return ~exists().where(
            legit.transaction_id == transaction_id,
            legit.is_fraud == 0,
            legit.known_at > at,
            legit.known_at < until,
        )

    of_customers = one_of(TransactionRow.customer_id, "customers", dialect)
    tx_columns = (TransactionRow.customer_id, TransactionRow.transaction_id)
    declined_at = func.coalesce(Decision.reviewed_at, Decision.decided_at, type_=DateTime)
    labelled = (
        select(*tx_columns, Label.known_at, literal("label"), Label.source)
        .join(Label, Label.transaction_id == TransactionRow.transaction_id)
        .where(
            of_customers,
            Label.is_fraud == 1,
            Label.known_at >= since,
            Label.known_at < until,
            not_taken_back(Label.transaction_id, Label.known_at),
        )
    )
    declined = (
        select(*tx_columns, declined_at, literal("decision"), Decision.final_decision)
        .join(Decision, Decision.transaction_id == TransactionRow.transaction_id)
        .where(
            of_customers,
            Decision.final_decision.in_(DECLINED),
            declined_at >= since,
            declined_at < until,
            not_taken_back(Decision.transaction_id, declined_at),
        )
    )
    return union_all(labelled, declined)
