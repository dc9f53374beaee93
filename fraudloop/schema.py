"""The transaction schema checked at the door; bad records are rejected, never dropped silently."""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    field_validator,
)

from fraudloop.frames import datetime_array
from fraudloop.policy import Limits
from fraudloop.redaction import looks_sensitive

TRANSACTION_COLUMNS = [
    "transaction_id",
    "tx_datetime",
    "customer_id",
    "terminal_id",
    "amount",
    "card_number",
    "email",
    "ip_address",
]

ID_LENGTH = 64  # the store's key columns are String(64)
ID_FIELDS = ("transaction_id", "customer_id", "terminal_id")
_PERSONAL = "looks like a card number, e-mail or IP address; ids must not carry personal data"
# pandas' nanosecond timestamps end in 2262; features look 37 days back from each transaction
EARLIEST, LATEST = datetime(1970, 1, 1), datetime(2200, 1, 1)


class Transaction(BaseModel):
    """One incoming card transaction; unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: Annotated[StrictStr, Field(min_length=1, max_length=ID_LENGTH)]
    tx_datetime: datetime
    customer_id: Annotated[StrictStr, Field(min_length=1, max_length=ID_LENGTH)]
    terminal_id: Annotated[StrictStr, Field(min_length=1, max_length=ID_LENGTH)]
    amount: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
    card_number: StrictStr | None = None
    email: StrictStr | None = None
    ip_address: StrictStr | None = None

    @field_validator("tx_datetime")
    @classmethod
    def _naive_utc(cls, value: datetime) -> datetime:
        return naive_utc(value)


def naive_utc(value: datetime) -> datetime:
    """Stored times are naive UTC; offsets are converted, not dropped; the range is pandas'."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be from {EARLIEST:%Y-%m-%d} and before {LATEST:%Y-%m-%d}")
    return value


class FieldError(BaseModel):
    field: str
    problem: str


class Rejection(BaseModel):
    """Why a record was quarantined: every field and its problem (`field` and `problem` are the
    first of them), plus the record itself."""

    transaction_id: str | None
    field: str
    problem: str
    record: dict[str, Any]
    errors: list[FieldError] = []


def validate_record(
    record: Mapping[str, Any], limits: Limits | None = None
) -> Transaction | Rejection:
    """A transaction, or every problem of the record, each naming its field; with `limits`
    (the policy's), amounts and texts beyond them too."""
    try:
        valid = Transaction.model_validate(dict(record))
    except ValidationError as exc:
        errors = _text_errors(record) + [_field_error(e) for e in exc.errors()]
        seen = {e.field for e in errors}
        return _rejection(record, errors + [e for e in _id_errors(record) if e.field not in seen])
    ids = f"{valid.transaction_id}\n{valid.customer_id}\n{valid.terminal_id}"
    rest = f"{valid.card_number or ''}{valid.email or ''}{valid.ip_address or ''}"
    if not (ids.isascii() and rest.isascii()) or "\x00" in ids or "\x00" in rest:
        errors = _text_errors(record)  # the common case, plain ASCII, never gets here
        if errors:
            return _rejection(record, errors)
    if looks_sensitive(ids) or not all(i.strip() for i in ids.split("\n")):
        return _rejection(record, _id_errors(record))
    if limits is not None and (
        valid.amount > limits.max_amount or len(rest) > limits.max_text_length
    ):
        errors = _limit_errors(valid, limits)
        if errors:
            return _rejection(record, errors)
    return valid


def _limit_errors(valid: Transaction, limits: Limits) -> list[FieldError]:
    errors = []
    if valid.amount > limits.max_amount:
        errors.append(
            FieldError(field="amount", problem=f"must be at most {limits.max_amount:,.2f}")
        )
    for name in ("card_number", "email", "ip_address"):
        value = getattr(valid, name)
        if value is not None and len(value) > limits.max_text_length:
            errors.append(
                FieldError(
                    field=name, problem=f"must be at most {limits.max_text_length} characters"
                )
            )
    return errors


def printable(text: str) -> str:
    """Text any store and any JSON encoder take: lone surrogates and NUL bytes as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _text_errors(record: Mapping[str, Any]) -> list[FieldError]:
    """Field names and values that no store can keep as text: a NUL byte (PostgreSQL refuses
    it, SQLite would keep it: the two must agree) or a lone surrogate (not UTF-8)."""
    errors = []
    for key, value in record.items():
        for text, what in ((key, "field name"), (value, "value")):
            if not isinstance(text, str):
                continue
            if "\x00" in text:
                errors.append(
                    FieldError(field=printable(str(key)), problem=f"{what} contains a NUL byte")
                )
            elif not text.isascii() and printable(text) != text:
                errors.append(
                    FieldError(
                        field=printable(str(key)),
                        problem=f"{what} is not valid UTF-8 text (a lone surrogate)",
                    )
                )
    return errors


def _id_errors(record: Mapping[str, Any]) -> list[FieldError]:
    """Ids are stored and shown unredacted: blank ones, or ones that look like personal data (a
    card number as customer id, an e-mail as terminal id), are refused here, before they reach a
    reviewer or stall the review outbox."""
    errors = []
    for name in ID_FIELDS:
        value = record.get(name)
        if not isinstance(value, str):
            continue
        if not value.strip():
            errors.append(FieldError(field=name, problem="must not be blank"))
        elif looks_sensitive(value):
            errors.append(FieldError(field=name, problem=_PERSONAL))
    return errors


def _rejection(record: Mapping[str, Any], errors: list[FieldError]) -> Rejection:
    tx_id = record.get("transaction_id")
    return Rejection(
        transaction_id=str(tx_id) if tx_id is not None else None,
        field=errors[0].field,
        problem=errors[0].problem,
        record=dict(record),
        errors=errors,
    )


def _field_error(error: Any) -> FieldError:
    field = printable(".".join(str(p) for p in error["loc"])) or "<record>"
    if error["type"] == "extra_forbidden":
        return FieldError(field=field, problem="unknown field")
    return FieldError(field=field, problem=str(error["msg"]).removeprefix("Value error, "))


def validate_batch(
    records: Iterable[Mapping[str, Any]], limits: Limits | None = None
) -> tuple[pd.DataFrame, list[Rejection]]:
    """Split a batch into a frame of valid transactions and a list of rejections."""
    valid: list[Transaction] = []
    rejected: list[Rejection] = []
    for record in records:
        result = validate_record(record, limits)
        if isinstance(result, Rejection):
            rejected.append(result)
        else:
            valid.append(result)
    return transactions_frame(valid), rejected


def transactions_frame(valid: Iterable[Transaction]) -> pd.DataFrame:
    """Validated transactions as the frame scoring takes (the API validates at its own door).
    Typed arrays per column: pandas' inference from rows cost more than a one-row request's
    model call."""
    valid = list(valid)
    columns = {
        name: _column(name, [getattr(t, name) for t in valid]) for name in TRANSACTION_COLUMNS
    }
    return pd.DataFrame(columns, copy=False)


def _column(name: str, values: list[Any]) -> np.ndarray:
    if name == "tx_datetime":
        return datetime_array(values)
    return np.array(values, dtype=float if name == "amount" else object)  # the rest: text or None
