"""The transaction schema checked at the door; bad records are rejected, never dropped silently."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
)

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


class Transaction(BaseModel):
    """One incoming card transaction; unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: Annotated[StrictStr, Field(min_length=1)]
    tx_datetime: datetime
    customer_id: Annotated[StrictStr, Field(min_length=1)]
    terminal_id: Annotated[StrictStr, Field(min_length=1)]
    amount: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
    card_number: StrictStr | None = None
    email: StrictStr | None = None
    ip_address: StrictStr | None = None


class Rejection(BaseModel):
    """Why a record was quarantined: the field and the problem, plus the record itself."""

    transaction_id: str | None
    field: str
    problem: str
    record: dict[str, Any]


def validate_record(record: Mapping[str, Any]) -> Transaction | Rejection:
    try:
        return Transaction.model_validate(dict(record))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<record>"
        problem = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        tx_id = record.get("transaction_id")
        return Rejection(
            transaction_id=str(tx_id) if tx_id is not None else None,
            field=field,
            problem=problem,
            record=dict(record),
        )


def validate_batch(records: Iterable[Mapping[str, Any]]) -> tuple[pd.DataFrame, list[Rejection]]:
    """Split a batch into a frame of valid transactions and a list of rejections."""
    valid: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for record in records:
        result = validate_record(record)
        if isinstance(result, Rejection):
            rejected.append(result)
        else:
            valid.append(result.model_dump())
    frame = pd.DataFrame(valid, columns=TRANSACTION_COLUMNS)
    frame["tx_datetime"] = pd.to_datetime(frame["tx_datetime"])
    frame["amount"] = frame["amount"].astype(float)
    return frame, rejected
