"""Issue 16 item 9: the fallback card rule and the below-review choice, at their boundaries;
every fallback decision names the rule that decided it."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from api.scoring import Reason
from cli.policy import policy_app
from fraudloop.errors import FraudloopError
from fraudloop.labels import CardFlag
from fraudloop.policy import (
    FallbackRule,
    Policy,
    Route,
    fallback_hits,
    fallback_route,
    load_policy,
)
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR
from pipeline.route import build_decisions

SHIPPED_TEXT = (PACKAGE_DIR / "policy.yaml").read_text()
POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
NOW = datetime(2026, 3, 1, 12, 0)
R = FallbackRule


def with_fallback(**changes: Any) -> Policy:
    """The shipped policy with other fallback settings, validated as a policy file would be."""
    raw = POLICY.model_dump()
    raw["fallback"] |= changes
    return Policy.model_validate(raw)


def rules(amount: float, terminal: str, flagged: bool, policy: Policy) -> list[FallbackRule]:
    return [hit.rule for hit in fallback_hits(amount, terminal, flagged, policy)]


@pytest.mark.parametrize(
    ("amount", "flagged", "action", "below", "route", "applied"),
    [
        (10.0, False, "review", "allow", Route.AUTO_ALLOW, [R.BELOW_REVIEW]),
        (10.0, False, "review", "review", Route.ASYNC_REVIEW, [R.BELOW_REVIEW]),
        (150.0, False, "review", "allow", Route.AUTO_ALLOW, [R.BELOW_REVIEW]),  # up to: below
        (150.0, False, "review", "review", Route.ASYNC_REVIEW, [R.BELOW_REVIEW]),
        (150.01, False, "review", "allow", Route.ASYNC_REVIEW, [R.REVIEW_AMOUNT]),
        (10.0, True, "review", "allow", Route.ASYNC_REVIEW, [R.FLAGGED_CARD]),
        (10.0, True, "block", "allow", Route.AUTO_BLOCK, [R.FLAGGED_CARD]),
        (500.0, True, "review", "allow", Route.ASYNC_REVIEW, [R.FLAGGED_CARD, R.REVIEW_AMOUNT]),
        (500.0, True, "block", "review", Route.AUTO_BLOCK, [R.FLAGGED_CARD, R.REVIEW_AMOUNT]),
        (
            1000.01,
            True,
            "review",
            "allow",
            Route.AUTO_BLOCK,
            [R.BLOCK_AMOUNT, R.FLAGGED_CARD, R.REVIEW_AMOUNT],
        ),
    ],
)
def test_card_rule_and_below_review_choice(
    amount: float,
    flagged: bool,
    action: str,
    below: str,
    route: Route,
    applied: list[FallbackRule],
) -> None:
    policy = with_fallback(flagged_card_action=action, below_review_amount=below)
    assert fallback_route(amount, "t1", policy, flagged) is route
    assert rules(amount, "t1", flagged, policy) == applied


@pytest.mark.parametrize("action", ["review", "block"])
def test_watchlist_and_flagged_card_together_block_by_the_watchlist(action: str) -> None:
    policy = with_fallback(watchlist_terminals=["bad"], flagged_card_action=action)
    assert fallback_route(1.0, "bad", policy, flagged=True) is Route.AUTO_BLOCK
    assert rules(1.0, "bad", True, policy) == [R.WATCHLIST, R.FLAGGED_CARD]
    assert fallback_route(1.0, "fine", policy, flagged=True) is not Route.AUTO_ALLOW


def test_a_policy_without_the_new_fields_keeps_its_old_routes(tmp_path: Path) -> None:
    """A policy file written before the card rule loads, with the rule off and small amounts
    allowed as before (each allow still names its rule)."""
    kept = [
        line
        for line in SHIPPED_TEXT.splitlines()
        if not line.lstrip().startswith(("flagged_card_", "below_review_amount"))
    ]
    path = tmp_path / "policy.yaml"
    path.write_text("\n".join(kept))
    old = load_policy(path)
    assert old.fallback.flagged_card_days is None
    assert fallback_route(10.0, "t1", old, flagged=True) is Route.AUTO_ALLOW
    assert rules(10.0, "t1", True, old) == [R.BELOW_REVIEW]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("flagged_card_action: review", "flagged_card_action: hold", "flagged_card_action"),
        ("below_review_amount: allow", "below_review_amount: maybe", "below_review_amount"),
        ("flagged_card_days: 30", "flagged_card_days: 0", "flagged_card_days"),
        ("flagged_card_days: 30", "flagged_card_days: soon", "flagged_card_days"),
    ],
)
def test_bad_fallback_values_name_the_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in SHIPPED_TEXT
    path = tmp_path / "policy.yaml"
    path.write_text(SHIPPED_TEXT.replace(old, new))
    with pytest.raises(FraudloopError, match=rf"fallback\.{field}"):
        load_policy(path)
    checked = CliRunner().invoke(policy_app, ["check", str(path)])
    assert checked.exit_code == 2 and f"fallback.{field}" in checked.output


amounts = st.floats(0.0, 1e7, allow_nan=False)


@st.composite
def fallback_policies(draw: st.DrawFn) -> Policy:
    review, block = sorted(draw(st.lists(amounts, min_size=2, max_size=2)))
    raw = POLICY.model_dump()
    raw["high_impact"] = {"amount_above": draw(st.floats(review, 1e7))}
    raw["fallback"] = {
        "review_amount_above": review,
        "block_amount_above": block,
        "watchlist_terminals": draw(st.lists(st.sampled_from(["t1", "t2"]))),
        "flagged_card_days": draw(st.none() | st.integers(1, 365)),
        "flagged_card_action": draw(st.sampled_from(["review", "block"])),
        "below_review_amount": draw(st.sampled_from(["allow", "review"])),
    }
    return Policy.model_validate(raw)


SEVERITY = {Route.AUTO_ALLOW: 0, Route.ASYNC_REVIEW: 1, Route.SYNC_REVIEW: 2, Route.AUTO_BLOCK: 3}


@given(fallback_policies(), amounts, st.sampled_from(["t1", "t2", "t9"]), st.booleans())
def test_fallback_never_allows_what_a_rule_marks_risky(
    policy: Policy, amount: float, terminal: str, flagged: bool
) -> None:
    fb = policy.fallback
    hits = fallback_hits(amount, terminal, flagged, policy)
    got = hits[0].route
    assert SEVERITY[got] == max(SEVERITY[h.route] for h in hits)  # the strictest decides
    if got is Route.AUTO_ALLOW:  # only the below-review choice allows, and only by itself
        assert [h.rule for h in hits] == [R.BELOW_REVIEW] and fb.below_review_amount == "allow"
    if flagged and fb.flagged_card_days is not None:
        assert got is not Route.AUTO_ALLOW
        assert R.FLAGGED_CARD in [h.rule for h in hits]
    if amount > fb.review_amount_above or amount > policy.high_impact.amount_above:
        assert got is not Route.AUTO_ALLOW
    if terminal in fb.watchlist_terminals:
        assert got is Route.AUTO_BLOCK


def _tx(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    frame, rejected = validate_batch(
        {
            "transaction_id": tx_id,
            "tx_datetime": NOW - timedelta(minutes=1),
            "customer_id": customer,
            "terminal_id": "t1",
            "amount": amount,
        }
        for tx_id, customer, amount in rows
    )
    assert not rejected
    return frame


def test_each_fallback_decision_stores_the_rule_that_decided() -> None:
    tx = _tx([("a", "flagged", 20.0), ("b", "clean", 20.0), ("c", "clean", 400.0)])
    flags = {"flagged": CardFlag(NOW - timedelta(days=3), "fraud label (chargeback)")}
    batch = build_decisions(tx, None, POLICY, None, NOW, flags)
    routes = {d["transaction_id"]: d["route"] for d in batch.decisions}
    assert routes == {"a": "async_review", "b": "auto_allow", "c": "async_review"}
    first = {d["transaction_id"]: d["reasons"][0] for d in batch.decisions}
    assert [first[t]["feature"] for t in "abc"] == [
        "fallback.flagged_card_days",
        "fallback.below_review_amount",
        "fallback.review_amount_above",
    ]
    assert first["a"]["value"] == 3.0
    assert "fraud label (chargeback) 3 days ago" in first["a"]["text"]
    for reason in first.values():
        Reason.model_validate(reason)  # the API answers fallback reasons as the model's
    events = {e["transaction_id"]: e for e in batch.events}
    assert {t: events[t]["details"]["fallback_rule"] for t in "abc"} == {
        "a": "flagged_card_days",
        "b": "below_review_amount",
        "c": "review_amount_above",
    }
    assert events["a"]["explanation_tokens"] == [first["a"]["text"]]
    assert {r["transaction_id"] for r in batch.reviews} == {"a", "c"}


def test_the_model_path_carries_no_fallback_rule() -> None:
    tx = _tx([("a", "flagged", 20.0)])
    reasons = [{"feature": "amount", "value": 1.0, "contribution": 0.5, "text": "big amount"}]
    scored = pd.DataFrame({"score": [0.1], "confidence": [0.9], "reasons": [reasons]})
    flags = {"flagged": CardFlag(NOW, "fraud label (review)")}  # the model decides: unused
    batch = build_decisions(tx, scored, POLICY, None, NOW, flags)
    assert batch.decisions[0]["route"] == "auto_allow"
    assert batch.decisions[0]["reasons"] == reasons
    assert "fallback_rule" not in batch.events[0]["details"]


def test_explain_shows_every_fallback_rule_and_its_route(tmp_path: Path) -> None:
    def rows(path: Path) -> dict[str, str]:
        shown = CliRunner().invoke(policy_app, ["explain", str(path)])
        assert shown.exit_code == 0
        return {
            rule.value: next(line for line in shown.output.splitlines() if rule.value in line)
            for rule in FallbackRule
        }

    shipped = rows(PACKAGE_DIR / "policy.yaml")
    assert "async_review" in shipped["flagged_card_days"]
    assert "auto_allow" in shipped["below_review_amount"]
    path = tmp_path / "policy.yaml"
    path.write_text(
        SHIPPED_TEXT.replace("below_review_amount: allow", "below_review_amount: review").replace(
            "flagged_card_action: review", "flagged_card_action: block"
        )
    )
    changed = rows(path)
    assert "auto_block" in changed["flagged_card_days"]
    assert "async_review" in changed["below_review_amount"]
