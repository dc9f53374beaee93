"""Issue 16's door: ids that look like personal data or are blank never get in, and a record's
every problem is reported, each with its field."""

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import hash_key, new_key
from fraudloop import audit
from fraudloop.policy import Route, load_policy, route_transaction
from fraudloop.redaction import find_sensitive, looks_sensitive
from fraudloop.schema import Rejection, validate_record
from fraudloop.settings import PACKAGE_DIR, ApiKey, Settings
from fraudloop.storage import migrate, open_session

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


def test_a_database_outage_is_a_503_with_retry_after(tmp_path: Path) -> None:
    """Every data endpoint answered 500 (with a traceback) while /readyz said 503."""
    key = new_key()
    settings = Settings(
        home=tmp_path,
        db_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",  # nothing listens on port 1
        api_keys=[ApiKey(name="scorer-1", role="scorer", sha256=hash_key(key))],
    )
    with TestClient(create_app(settings)) as client:
        record = {**GOOD, "card_number": None, "email": None, "ip_address": None}
        answer = client.post("/v1/score", json=record, headers={"X-API-Key": key})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert (
        "unavailable" in answer.json()["detail"] and "FRAUDLOOP_DB_URL" in answer.json()["detail"]
    )


def test_a_registry_that_is_down_says_so_not_that_the_alias_is_missing() -> None:
    from fraudloop.errors import ServiceUnavailable
    from models.scoring import load_model

    with pytest.raises(ServiceUnavailable, match="127.0.0.1:1 is unavailable"):
        load_model("http://127.0.0.1:1", "fraud-detector")


POLICY = load_policy(PACKAGE_DIR / "policy.yaml")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": 1e12}, "amount"),
        ({"email": "a" * 1_000_000 + "@example.com"}, "email"),
        ({"card_number": "4" * 300}, "card_number"),
    ],
)
def test_amounts_and_texts_beyond_the_policy_limits_are_refused(
    change: dict[str, Any], field: str
) -> None:
    result = validate_record({**GOOD, **change}, POLICY.limits)
    assert isinstance(result, Rejection) and result.field == field
    assert "at most" in result.problem
    assert not isinstance(validate_record(GOOD, POLICY.limits), Rejection)


def test_a_low_score_on_a_high_impact_amount_goes_to_a_person() -> None:
    high = POLICY.high_impact.amount_above + 1
    assert route_transaction(0.01, 0.99, high, POLICY) is Route.ASYNC_REVIEW
    assert route_transaction(0.01, 0.99, high - 2, POLICY) is Route.AUTO_ALLOW
    assert route_transaction(0.99, 0.99, high, POLICY) is Route.AUTO_BLOCK


def test_a_body_over_the_limit_is_a_413(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(home=tmp_path))) as client:
        body = b"[" + b" " * POLICY.limits.max_body_bytes + b"]"
        answer = client.post(
            "/v1/score", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 413


def test_rate_limits_answer_429_and_are_counted_and_audited_once(tmp_path: Path) -> None:
    text = (
        (PACKAGE_DIR / "policy.yaml")
        .read_text()
        .replace("per_card: 20/minute", "per_card: 2/minute")
    )
    (tmp_path / "policy.yaml").write_text(text)
    key = new_key()
    settings = Settings(
        home=tmp_path,
        policy_file=tmp_path / "policy.yaml",
        api_keys=[ApiKey(name="scorer-1", role="scorer", sha256=hash_key(key))],
    )
    migrate(settings.database_url)  # as `fraudloop serve` does
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post(
                "/v1/score", json={**GOOD, "transaction_id": f"t-{i}"}, headers={"X-API-Key": key}
            )
            for i in range(4)
        ]
        ready = client.get("/readyz").json()
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1 and "card" in answers[2].json()["detail"]
    assert ready["rate_limited"] == {"card": 2}
    with open_session(settings.database_url) as s:
        events = audit.trail(s)
    refused = events[events["event_type"] == "rate_limited"]
    assert len(refused) == 1  # once per card and minute, however often it is refused
    assert "4111" not in str(refused.iloc[0]["details"])  # the card by its digest only
