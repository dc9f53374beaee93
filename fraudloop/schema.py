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

    @field_validator("transaction_id", "customer_id", "terminal_id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        """Ids are stored and shown unredacted: blank ones or ones that look like personal data
        (a card number as customer id, an e-mail as terminal id) are refused here, before they
        reach a reviewer or stall the review outbox."""
        if not value.strip():
            raise ValueError("must not be blank")
        if looks_sensitive(value):
            raise ValueError(
                "looks like a card number, e-mail or IP address; ids must not carry personal data"
            )
        return value

    @field_validator("tx_datetime")
    @classmethod
    def _naive_utc(cls, value: datetime) -> datetime:
        """Stored times are naive UTC; offsets are converted, not dropped."""
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


def validate_record(record: Mapping[str, Any]) -> Transaction | Rejection:
    try:
        return Transaction.model_validate(dict(record))
    except ValidationError as exc:
        errors = [_field_error(e) for e in exc.errors()]
        tx_id = record.get("transaction_id")
        return Rejection(
            transaction_id=str(tx_id) if tx_id is not None else None,
            field=errors[0].field,
            problem=errors[0].problem,
            record=dict(record),
            errors=errors,
        )


def _field_error(error: Any) -> FieldError:
    field = ".".join(str(p) for p in error["loc"]) or "<record>"
    if error["type"] == "extra_forbidden":
        return FieldError(field=field, problem="unknown field")
    return FieldError(field=field, problem=str(error["msg"]).removeprefix("Value error, "))


def validate_batch(records: Iterable[Mapping[str, Any]]) -> tuple[pd.DataFrame, list[Rejection]]:
    """Split a batch into a frame of valid transactions and a list of rejections."""
    valid: list[Transaction] = []
    rejected: list[Rejection] = []
    for record in records:
        result = validate_record(record)
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
