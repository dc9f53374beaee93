"""Issue 16's door: ids that look like personal data or are blank never get in, and a record's
every problem is reported, each with its field."""

from typing import Any

import pytest

from fraudloop.redaction import find_sensitive, looks_sensitive
from fraudloop.schema import Rejection, validate_record

GOOD: dict[str, Any] = {
    "transaction_id": "t-1",
    "tx_datetime": "2018-05-01T10:00:00",
    "customer_id": "c-1",
    "terminal_id": "term-1",
    "amount": 12.5,
    "card_number": "4111111111111111",  # sensitive fields themselves are fine: they are redacted
    "email": "a@example.com",
    "ip_address": "10.1.2.3",
}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("customer_id", "4111111111111111", "card number, e-mail or IP"),
        ("customer_id", "4111 1111 1111 1111", "card number, e-mail or IP"),
        ("terminal_id", "shop@example.com", "card number, e-mail or IP"),
        ("transaction_id", "192.168.0.1", "card number, e-mail or IP"),
        ("terminal_id", "   ", "must not be blank"),
        ("transaction_id", "\t", "must not be blank"),
    ],
)
def test_ids_that_carry_personal_data_or_nothing_are_refused(
    field: str, value: str, problem: str
) -> None:
    result = validate_record({**GOOD, field: value})
    assert isinstance(result, Rejection)
    assert (result.field, problem in result.problem) == (field, True)


def test_ordinary_ids_pass() -> None:
    for ids in ({"customer_id": "123456"}, {"terminal_id": "T-00042"}, {"transaction_id": "1.2"}):
        assert not isinstance(validate_record({**GOOD, **ids}), Rejection)


def test_every_error_of_a_record_is_named() -> None:
    result = validate_record({**GOOD, "customer_id": "a@b.example", "amount": -1, "extra": "x"})
    assert isinstance(result, Rejection)
    assert {e.field for e in result.errors} == {"customer_id", "amount", "extra"}
    assert all(e.problem and not e.problem.startswith("Value error") for e in result.errors)


@pytest.mark.parametrize(
    "text",
    ["4111 1111 1111 1111", "x@y.example", "10.0.0.1", "c-123", "1.2.3", "123456789012", ""],
)
def test_the_one_pass_check_agrees_with_the_finder(text: str) -> None:
    assert looks_sensitive(text) == bool(find_sensitive(text))
