"""Router properties over generated policies and inputs (hypothesis), not hand-picked points."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudloop.errors import FraudloopError
from fraudloop.policy import (
    REVIEW_ROUTES,
    Policy,
    Route,
    decision_table,
    fallback_route,
    load_policy,
    route,
)
from fraudloop.settings import PACKAGE_DIR

SHIPPED = load_policy(PACKAGE_DIR / "policy.yaml")
unit = st.floats(0.0, 1.0, allow_nan=False)
amounts = st.floats(0.0, 1e7, allow_nan=False)
# allow < async review < sync review (a merchant hold) < block
SEVERITY = {Route.AUTO_ALLOW: 0, Route.ASYNC_REVIEW: 1, Route.SYNC_REVIEW: 2, Route.AUTO_BLOCK: 3}
ACTION = {Route.AUTO_ALLOW: 0, Route.ASYNC_REVIEW: 1, Route.SYNC_REVIEW: 1, Route.AUTO_BLOCK: 2}


def sorted_floats(n: int) -> st.SearchStrategy[list[float]]:
    return st.lists(unit, min_size=n, max_size=n).map(sorted)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Any valid policy: random ordered thresholds in both modes, random fallback amounts."""
    review_from, sync_from, block_above = draw(sorted_floats(3))
    sync_conf, async_conf = draw(sorted_floats(2))
    async_risk, sync_risk = draw(sorted_floats(2).filter(lambda p: p[0] < p[1]))
    review_amount, block_amount = sorted(draw(st.lists(amounts, min_size=2, max_size=2)))
    raw = SHIPPED.model_dump()
    raw.update(
        mode=draw(st.sampled_from(["fraud", "generic"])),
        fraud={
            "review_from": review_from,
            "sync_score_from": sync_from,
            "block_above": block_above,
            "low_confidence_below": draw(unit),
        },
        generic={
            "sync_risk_from": sync_risk,
            "sync_confidence_below": sync_conf,
            "async_confidence_below": async_conf,
            "async_risk_above": async_risk,
        },
        high_impact={"amount_above": draw(st.floats(review_amount, 1e7))},
        fallback={
            "review_amount_above": review_amount,
            "block_amount_above": block_amount,
            "watchlist_terminals": draw(st.lists(st.sampled_from(["t1", "t2", "t3"]))),
        },
    )
    return Policy.model_validate(raw)


def near_thresholds(policy: Policy) -> st.SearchStrategy[float]:
    """Any value, or exactly a threshold of the policy: where boundary bugs hide."""
    cut = [*policy.fraud.model_dump().values(), *policy.generic.model_dump().values()]
    return st.one_of(unit, st.sampled_from(cut))


@given(policies(), st.data())
def test_every_input_gets_exactly_one_route(policy: Policy, data: st.DataObject) -> None:
    """The explained table partitions the input space and agrees with the router."""
    score, conf = data.draw(near_thresholds(policy)), data.draw(near_thresholds(policy))
    matching = [rule for rule in decision_table(policy) if rule.matches(score, conf)]
    assert len(matching) == 1
    assert matching[0].route == route(score, conf, policy)


@given(policies(), st.data())
def test_route_is_monotone_in_score_for_fixed_confidence(
    policy: Policy, data: st.DataObject
) -> None:
    values = [data.draw(near_thresholds(policy)) for _ in range(3)]
    conf, (low, high) = values[0], sorted(values[1:])
    assert SEVERITY[route(low, conf, policy)] <= SEVERITY[route(high, conf, policy)]


@given(sorted_floats(2))
def test_shipped_policy_is_monotone_with_model_confidence(scores: list[float]) -> None:
    """With confidence = max(s, 1 - s) as the model gives it: allow < review < block."""
    low, high = scores
    routed = [route(s, max(s, 1 - s), SHIPPED) for s in (low, high)]
    assert ACTION[routed[0]] <= ACTION[routed[1]]


@given(unit, unit)
def test_spec_boundaries(score: float, conf: float) -> None:
    """SPEC: block if score > 0.95; review if 0.70 <= score <= 0.95; allow otherwise."""
    got = route(score, conf, SHIPPED)
    if score > 0.95:
        assert got == Route.AUTO_BLOCK
    elif score >= 0.70:
        assert got in REVIEW_ROUTES
    else:
        assert got == Route.AUTO_ALLOW


@pytest.mark.parametrize("score", [0.70, 0.95])
def test_spec_boundaries_are_review_inclusive(score: float) -> None:
    assert all(route(score, c / 100, SHIPPED) in REVIEW_ROUTES for c in range(101))


@given(policies(), amounts, st.sampled_from(["t1", "t2", "t9"]))
def test_fallback_never_silently_allows_a_high_amount(
    policy: Policy, amount: float, terminal: str
) -> None:
    got = fallback_route(amount, terminal, policy)
    if amount > policy.high_impact.amount_above or amount > policy.fallback.review_amount_above:
        assert got != Route.AUTO_ALLOW
    if terminal in policy.fallback.watchlist_terminals:
        assert got == Route.AUTO_BLOCK


def test_policy_whose_fallback_allows_high_impact_is_rejected(tmp_path: Path) -> None:
    text = (PACKAGE_DIR / "policy.yaml").read_text()
    bad = text.replace("review_amount_above: 150.0", "review_amount_above: 1000.0").replace(
        "amount_above: 1000.0      #", "amount_above: 500.0      #"
    )
    path = tmp_path / "policy.yaml"
    path.write_text(bad)
    with pytest.raises(FraudloopError, match=r"fallback\.review_amount_above"):
        load_policy(path)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("async_risk_above: 0.60", "async_risk_above: 0.95", "generic"),
        (f'version: "{SHIPPED.version}"', 'version: ""', "version"),
        ("review_amount_above: 150.0", "review_amount_above: 5000.0", "fallback"),
    ],
)
def test_bad_orderings_name_the_section(tmp_path: Path, old: str, new: str, field: str) -> None:
    text = (PACKAGE_DIR / "policy.yaml").read_text()
    assert old in text
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace(old, new))
    with pytest.raises(FraudloopError, match=field):
        load_policy(path)
