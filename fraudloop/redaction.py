"""What a reviewer may see: decided here only, applied before anything leaves the store."""

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd
from pandas.api.types import is_float_dtype

from fraudloop.frames import column_values

SENSITIVE_FIELDS = ("card_number", "email", "ip_address")

_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


def mask_card(card: str | None) -> str | None:
    digits = re.sub(r"\D", "", card or "")
    return f"**** {digits[-4:]}" if digits else None


def mask_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return f"***@{email.rsplit('@', 1)[1]}"


def mask_ip(ip: str | None) -> str | None:
    parts = (ip or "").split(".")
    return ".".join([*parts[:2], "x", "x"]) if len(parts) == 4 else None  # noqa: PLR2004 - IPv4


_MASKS = (  # what a reviewer sees instead of each sensitive field
    ("card", "card_number", mask_card),
    ("email_domain", "email", mask_email),
    ("ip_prefix", "ip_address", mask_ip),
)


def redact(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the record with sensitive fields masked; other fields pass through as text.

    Quarantined records are redacted too, so a sensitive field may hold any JSON value (a card
    number sent as a number is still a card number): the masks read it as text."""
    out = {k: v for k, v in record.items() if k not in SENSITIVE_FIELDS}
    for masked, source, mask in _MASKS:
        out[masked] = mask(_text(record.get(source)))
    return {k: _plain(v) for k, v in out.items()}


def redact_frame(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """`redact` of every row, column by column: the batch path's redaction."""
    columns: dict[str, list[Any]] = {
        str(name): _plain_column(frame, str(name))
        for name in frame.columns
        if name not in SENSITIVE_FIELDS
    }
    for masked, source, mask in _MASKS:
        raw = column_values(frame, source) if source in frame.columns else [None] * len(frame)
        columns[masked] = [mask(value) for value in raw]
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def looks_sensitive(text: str) -> bool:
    """`find_sensitive(text)` is not empty, asked cheaply: the schema asks it of every id, and
    the e-mail and IPv4 patterns need an `@` or a `.` to match at all."""
    return (
        ("@" in text and _EMAIL.search(text) is not None)
        or ("." in text and _IPV4.search(text) is not None)
        or _CARD.search(text) is not None
    )


def find_sensitive(text: str) -> list[str]:
    """Anything in a payload that looks like a raw card number, e-mail or IPv4 address."""
    return [m.group(0) for rx in (_CARD, _EMAIL, _IPV4) for m in rx.finditer(text)]


def _plain_column(frame: pd.DataFrame, name: str) -> list[Any]:
    if is_float_dtype(frame[name].dtype):
        return [round(value, 2) for value in frame[name].tolist()]
    return [_plain(value) for value in column_values(frame, name)]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 2)
    return value
