"""The audit chain's hashed text and event ids are byte for byte what they always were: stored
chains must keep verifying, so the faster code is checked against the plain stdlib calls."""

import json
import uuid
from datetime import datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fraudloop import audit
from fraudloop.storage import json_default

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.datetimes()  # through `default`, as a timestamp would go
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def _dumps(content: Any) -> str:
    """`canonical` as it was written before the encoder was kept."""
    return json.dumps(
        content,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=json_default,
    )


@settings(max_examples=1_000)
@given(st.dictionaries(st.text(), _JSON, max_size=14))
def test_canonical_is_the_stdlib_text(content: dict[str, Any]) -> None:
    assert audit.canonical(content) == _dumps(content)


_STORED_JSON = st.recursive(  # what a stored form holds: JSON types (datetimes are text by then)
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=-1e-3, max_value=1e-3)  # where orjson spells floats its own way
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=1_000)
@given(st.dictionaries(st.text(), _STORED_JSON, max_size=14))
@example({"a": 1e-05, "b": [1.5e-07, -9.9e-05], "c": 0.0001, "d": 1e16, "e": 2**70})
@example({"text": "1e-05, 0.00001 and an e-mail in words", "n": 0.5})
def test_stored_canonical_is_canonical(content: dict[str, Any]) -> None:
    assert audit.stored_canonical(content) == _dumps(content)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: "a", "b": 2}])
def test_canonical_refuses_what_it_always_refused(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as expected:
        _dumps({"x": bad})
    with pytest.raises(expected.type):
        audit.canonical({"x": bad})


@settings(max_examples=500)
@given(st.text())
def test_event_id_is_uuid5_of_the_key(key: str) -> None:
    assert audit.event_id(key) == str(uuid.uuid5(uuid.NAMESPACE_URL, f"fraudloop:{key}"))


def test_a_known_event_keeps_its_hash() -> None:
    """Pinned from the chain code before this change: a different byte changes the hash."""
    ev = audit.event(
        "decision:tx-1",
        "decision",
        "model",
        datetime(2026, 3, 1, 12, 0, 0, 7),
        transaction_id="tx-1",
        input_snapshot={"amount": 10.5, "card": "**** 1234", "name": "Zoë 中"},
        model_confidence=0.9,
        explanation_tokens=["big amount"],
        route="auto_allow",
    )
    content = {**ev, "timestamp": ev["timestamp"].isoformat()}
    assert ev["event_id"] == "7e32f327-0b04-5fde-9b02-b5777adcdbfd"
    assert audit.chain_hash(audit.GENESIS, content) == (
        "32e514a20c93fdbd3f02fbf4d0038ad0f5217b0dea32a74ca8fbea9f84b8ccd8"
    )
