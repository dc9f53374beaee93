"""build_task shows only redacted values, refuses raw PII, and ranks by business impact."""

from datetime import datetime
from typing import Any

import pytest

from fraudloop.errors import FraudloopError
from fraudloop.policy import queue_priority as priority
from fraudloop.redaction import redact
from labeling.tasks import build_task

RAW = {
    "transaction_id": "tx-1",
    "tx_datetime": datetime(2018, 4, 1, 12, 30),
    "customer_id": "c-42",
    "terminal_id": "t-7",
    "amount": 250.0,
    "card_number": "4111 1111 1111 1111",
    "email": "jane.doe@example.com",
    "ip_address": "192.168.10.77",
}


def _case(**overrides: Any) -> dict[str, Any]:
    case = {
        "case_id": "case-1",
        "transaction_id": "tx-1",
        "snapshot": redact(RAW),
        "score": 0.8,
        "recommendation": "reject",
        "reasons": [
            {"feature": "amount", "value": 250.0, "contribution": 1.2, "text": "amount is high"},
            {"feature": "tx_hour", "value": 3.0, "contribution": 0.4, "text": "unusual hour"},
            {
                "feature": "terminal_risk",
                "value": 0.2,
                "contribution": 0.1,
                "text": "risky terminal",
            },
        ],
        "model_version": "7",
        "sla_due_at": datetime(2026, 11, 26, 9, 0),
    }
    return case | overrides


def test_task_carries_redacted_strings_and_keys() -> None:
    data = build_task(_case())["data"]
    assert data["case_id"] == "case-1"
    assert data["sla_due_at"] == "2026-11-26T09:00:00Z"
    assert all(isinstance(v, str) for v in data["transaction"].values())
    assert data["transaction"]["card"] == "**** 1111"
    assert data["reasons"].splitlines() == [
        "1. amount is high",
        "2. unusual hour",
        "3. risky terminal",
    ]
    text = repr(data)
    for raw in ("4111 1111 1111 1111", "jane.doe@example.com", "192.168.10.77"):
        assert raw not in text


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("card", "4111111111111111"),
        ("email_domain", "jane.doe@example.com"),
        ("ip_prefix", "192.168.10.77"),
    ],
)
def test_raw_sensitive_values_are_refused_without_echoing_them(field: str, raw: str) -> None:
    snapshot = redact(RAW) | {field: raw}
    with pytest.raises(FraudloopError, match=f"transaction.{field}") as err:
        build_task(_case(snapshot=snapshot))
    assert raw not in str(err.value)


def test_raw_values_outside_the_snapshot_are_refused_too() -> None:
    with pytest.raises(FraudloopError, match="reasons"):
        build_task(_case(reasons=["mail from jane.doe@example.com", "b", "c"]))


def test_priority_is_score_times_amount() -> None:
    data = build_task(_case())["data"]
    assert data["priority"] == pytest.approx(0.8 * 250.0)
    assert priority(0.9, 10.0) < priority(0.75, 1_000.0)  # impact, not score alone


def test_long_float_scores_do_not_look_like_card_numbers() -> None:
    assert build_task(_case(score=0.8734561234567891))["data"]["score"] == 0.8735
