"""Redaction and the schema at the door."""

import json
from datetime import datetime

import pytest

from fraudloop.redaction import find_sensitive, redact
from fraudloop.schema import Rejection, validate_batch, validate_record

GOOD = {
    "transaction_id": "tx-1",
    "tx_datetime": datetime(2026, 1, 1, 12, 0),
    "customer_id": "c1",
    "terminal_id": "t1",
    "amount": 42.5,
    "card_number": "4111 1111 1111 1234",
    "email": "jane.doe@example.com",
    "ip_address": "203.0.113.77",
}


def test_redact_masks_every_sensitive_field() -> None:
    out = redact(GOOD)
    text = json.dumps(out)
    assert out["card"] == "**** 1234"
    assert out["email_domain"] == "***@example.com"
    assert out["ip_prefix"] == "203.0.x.x"
    assert "4111" not in text and "jane.doe" not in text and "113.77" not in text
    assert find_sensitive(text) == []


def test_redact_masks_sensitive_fields_of_any_json_type() -> None:
    """A rejected record is quarantined redacted whatever its fields hold."""
    out = redact({**GOOD, "card_number": 4111111111111234, "email": True, "ip_address": [1]})
    assert out["card"] == "**** 1234"
    assert out["email_domain"] is None and out["ip_prefix"] is None
    assert "4111" not in json.dumps(out)


def test_find_sensitive_catches_raw_values() -> None:
    assert len(find_sensitive(json.dumps(GOOD, default=str))) == 3


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"amount": -1.0}, "amount", "greater than or equal"),
        ({"amount": "12"}, "amount", "valid number"),
        ({"customer_id": 5}, "customer_id", "valid string"),
        ({"merchant_secret": "x"}, "merchant_secret", "unknown field"),
        ({"amount": float("nan")}, "amount", "finite"),
    ],
)
def test_bad_record_names_field(change: dict, field: str, problem: str) -> None:
    result = validate_record({**GOOD, **change})
    assert isinstance(result, Rejection)
    assert result.field == field
    assert problem in result.problem


def test_missing_field_is_named() -> None:
    record = {k: v for k, v in GOOD.items() if k != "terminal_id"}
    result = validate_record(record)
    assert isinstance(result, Rejection) and result.field == "terminal_id"


def test_batch_goes_on_after_a_bad_record() -> None:
    frame, rejected = validate_batch(
        [GOOD, {**GOOD, "amount": -5.0}, {**GOOD, "transaction_id": "b"}]
    )
    assert list(frame["transaction_id"]) == ["tx-1", "b"]
    assert [r.field for r in rejected] == ["amount"]
