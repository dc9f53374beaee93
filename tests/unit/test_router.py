"""Every SPEC threshold of the router, boundaries included."""

from pathlib import Path

import pytest

from fraudloop.errors import FraudloopError
from fraudloop.policy import Route, fallback_route, load_policy, recommendation, route
from fraudloop.settings import PACKAGE_DIR

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")


def conf(score: float) -> float:
    return max(score, 1 - score)


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.0, Route.AUTO_ALLOW),
        (0.69999, Route.AUTO_ALLOW),
        (0.70, Route.SYNC_REVIEW),  # review band starts at 0.70; confidence 0.70 < 0.75 -> sync
        (0.76, Route.ASYNC_REVIEW),  # medium risk -> asynchronous queue
        (0.8499, Route.ASYNC_REVIEW),
        (0.85, Route.SYNC_REVIEW),  # high risk -> synchronous (merchant hold)
        (0.95, Route.SYNC_REVIEW),  # 0.95 is still review: block only above it
        (0.95001, Route.AUTO_BLOCK),
        (1.0, Route.AUTO_BLOCK),
    ],
)
def test_fraud_policy_boundaries(score: float, expected: Route) -> None:
    assert route(score, conf(score), POLICY) == expected


@pytest.mark.parametrize(
    ("risk", "confidence", "expected"),
    [
        (0.90, 0.95, Route.SYNC_REVIEW),
        (0.10, 0.59, Route.SYNC_REVIEW),
        (0.10, 0.60, Route.ASYNC_REVIEW),
        (0.10, 0.849, Route.ASYNC_REVIEW),
        (0.61, 0.95, Route.ASYNC_REVIEW),
        (0.60, 0.85, Route.AUTO_ALLOW),
        (0.10, 0.95, Route.AUTO_ALLOW),
    ],
)
def test_generic_template(risk: float, confidence: float, expected: Route) -> None:
    generic = POLICY.model_copy(update={"mode": "generic"})
    assert route(risk, confidence, generic) == expected


@pytest.mark.parametrize(
    ("amount", "terminal", "expected"),
    [
        (10.0, "t1", Route.AUTO_ALLOW),
        (150.0, "t1", Route.AUTO_ALLOW),
        (150.01, "t1", Route.ASYNC_REVIEW),
        (1000.0, "t1", Route.ASYNC_REVIEW),
        (1000.01, "t1", Route.AUTO_BLOCK),
    ],
)
def test_fallback_rules(amount: float, terminal: str, expected: Route) -> None:
    assert fallback_route(amount, terminal, POLICY) == expected


def test_fallback_watchlist_blocks() -> None:
    fb = POLICY.fallback.model_copy(update={"watchlist_terminals": ["bad"]})
    policy = POLICY.model_copy(update={"fallback": fb})
    assert fallback_route(1.0, "bad", policy) == Route.AUTO_BLOCK


def test_recommendation_separate_from_route() -> None:
    assert recommendation(Route.AUTO_ALLOW) == "approve"
    assert {recommendation(r) for r in Route if r != Route.AUTO_ALLOW} == {"reject"}


def test_bad_policy_names_field(tmp_path: Path) -> None:
    bad = (PACKAGE_DIR / "policy.yaml").read_text().replace("block_above: 0.95", "block_above: 2")
    path = tmp_path / "p.yaml"
    path.write_text(bad)
    with pytest.raises(FraudloopError, match=r"fraud\.block_above"):
        load_policy(path)
