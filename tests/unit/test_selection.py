"""Active-learning selection (pipeline.selection) on tiny made-up frames: the budget, the
candidates, each strategy's choice, exploration's inclusion probability, determinism."""

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from fraudloop.policy import EXPLORATION, ActiveLearning, Strategy, load_policy
from fraudloop.settings import PACKAGE_DIR
from pipeline import selection

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
SHIPPED = POLICY.active_learning


def _config(**update: object) -> ActiveLearning:
    """The shipped section with some fields changed, validated as a policy file would be."""
    return ActiveLearning.model_validate({**SHIPPED.model_dump(), **update})


def _frame(scores: list[float], routes: list[str] | None = None, **columns: object) -> pd.DataFrame:
    n = len(scores)
    return pd.DataFrame(
        {
            "transaction_id": [f"tx-{i}" for i in range(n)],
            "score": scores,
            "confidence": [max(s, 1 - s) for s in scores],
            "amount": columns.get("amount", [100.0] * n),
            "route": routes or ["auto_allow"] * n,
        }
    )


def _random_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scores = rng.beta(0.5, 8, n) * 0.69  # below the review band
    return _frame(list(scores), amount=list(rng.lognormal(4, 1, n)))


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("budget", [0, 1, 7, 40, 500])
def test_picks_respect_the_budget_and_are_distinct_candidates(
    strategy: Strategy, budget: int
) -> None:
    cands = _random_frame(60)
    vectors = np.random.default_rng(1).normal(size=(60, 4))
    picks = selection.select_reviews(cands, budget, _config(strategy=strategy), 3, vectors)
    assert len(picks) == min(budget, len(cands))
    assert picks["transaction_id"].is_unique
    assert set(picks["transaction_id"]) <= set(cands["transaction_id"])
    assert list(picks.columns) == selection.PICK_COLUMNS


def test_candidates_are_never_the_routers_reviews_nor_unscored_rows() -> None:
    batch = _frame(
        [0.1, 0.8, 0.9, 0.99, 0.2],
        ["auto_allow", "async_review", "sync_review", "auto_block", "auto_allow"],
    )
    batch.loc[4, "score"] = None  # decided by the fallback rules
    cands = selection.candidates(batch)
    assert list(cands["transaction_id"]) == ["tx-0", "tx-3"]


def test_top_score_takes_the_highest_auto_allowed_scores() -> None:
    cands = _frame(
        [0.3, 0.65, 0.99, 0.5, 0.1], ["auto_allow"] * 2 + ["auto_block"] + ["auto_allow"] * 2
    )
    picks = selection.select_reviews(
        cands, 2, _config(strategy="top_score", exploration_share=0), 0
    )
    assert list(picks["transaction_id"]) == ["tx-1", "tx-3"]
    assert set(picks["propensity"]) == {1.0}
    assert "65.0%" in picks["reason"].iloc[0]


def test_uncertainty_takes_the_least_confident_on_either_side() -> None:
    cands = _frame(
        [0.02, 0.45, 0.97, 0.6, 0.1], ["auto_allow"] * 2 + ["auto_block"] + ["auto_allow"] * 2
    )
    picks = selection.select_reviews(
        cands, 2, _config(strategy="uncertainty", exploration_share=0), 0
    )
    assert list(picks["transaction_id"]) == ["tx-1", "tx-3"]  # confidence 0.55, 0.60


def test_impact_takes_the_largest_score_times_amount() -> None:
    cands = _frame([0.6, 0.05, 0.3], amount=[10.0, 5000.0, 100.0])
    picks = selection.select_reviews(cands, 1, _config(strategy="impact", exploration_share=0), 0)
    assert list(picks["transaction_id"]) == ["tx-1"]  # 250 beats 6 and 30
    assert "250.00" in picks["reason"].iloc[0]


def test_diversity_picks_are_more_spread_than_top_score_picks() -> None:
    """The 30 riskiest candidates are variants of one pattern; 30 others are spread out."""
    rng = np.random.default_rng(5)
    cluster = rng.normal(0, 0.05, size=(30, 5)) + np.array([2.0, 0, 0, 0, 0])
    spread = rng.normal(0, 1.5, size=(30, 5))
    vectors = np.vstack([cluster, spread])
    scores = list(np.linspace(0.68, 0.5, 30)) + list(np.linspace(0.45, 0.3, 30))
    cands = _frame(scores)
    pool = {"exploration_share": 0, "diversity_pool": 60}
    top = selection.select_reviews(cands, 8, _config(strategy="top_score", **pool), 0)
    diverse = selection.select_reviews(cands, 8, _config(strategy="diversity", **pool), 0, vectors)
    row = {tx: i for i, tx in enumerate(cands["transaction_id"])}

    def spread_of(picks: pd.DataFrame) -> float:
        return selection.mean_pairwise_distance(vectors[[row[t] for t in picks["transaction_id"]]])

    assert spread_of(diverse) > 3 * spread_of(top)
    assert diverse["transaction_id"].iloc[0] == "tx-0"  # k-center starts from the riskiest
    assert len(set(diverse["transaction_id"]) & {f"tx-{i}" for i in range(30)}) <= 2


def test_diversity_without_vectors_reads_the_shap_reasons() -> None:
    """Two patterns in the top-3 contributions: the second pick is of the other pattern."""
    amount = [{"feature": "tx_amount", "contribution": 2.0, "value": 1.0, "text": ""}]
    night = [{"feature": "tx_during_night", "contribution": 2.0, "value": 1.0, "text": ""}]
    cands = _frame([0.6, 0.59, 0.58, 0.3]).assign(reasons=[amount, amount, amount, night])
    picks = selection.select_reviews(
        cands, 2, _config(strategy="diversity", exploration_share=0), 0
    )
    assert list(picks["transaction_id"]) == ["tx-0", "tx-3"]


def test_diversity_is_bounded_by_its_pool() -> None:
    cands = _random_frame(200)
    vectors = np.random.default_rng(2).normal(size=(200, 3))
    config = _config(strategy="diversity", exploration_share=0, diversity_pool=20)
    picks = selection.select_reviews(cands, 10, config, 0, vectors)
    top20 = set(cands.nlargest(20, "score")["transaction_id"])
    assert set(picks["transaction_id"]) <= top20


def test_mix_splits_the_strategic_picks_by_the_policys_shares() -> None:
    mix = _config(strategy="mix")
    plan = selection.strategy_plan(mix, 10)
    assert sum(n for _, n in plan) == 10
    assert dict(plan) == {
        Strategy.TOP_SCORE: 5,
        Strategy.UNCERTAINTY: 2,
        Strategy.DIVERSITY: 2,
        Strategy.IMPACT: 1,
    }
    assert sum(n for _, n in selection.strategy_plan(mix, 7)) == 7
    config = _config(strategy="mix", exploration_share=0)
    picks = selection.select_reviews(_random_frame(100), 20, config, 0)
    assert picks["strategy"].value_counts().to_dict() == {
        "top_score": 10,
        "uncertainty": 4,
        "diversity": 4,
        "impact": 2,
    }


def test_a_strategy_short_of_candidates_passes_its_slots_on() -> None:
    """Nothing was auto-allowed: top_score has no candidate, the next strategies pick."""
    cands = _frame([0.97, 0.98, 0.99, 0.96], ["auto_block"] * 4)
    config = _config(strategy="mix", exploration_share=0, mix={"top_score": 0.5, "impact": 0.5})
    picks = selection.select_reviews(cands, 4, config, 0)
    assert len(picks) == 4 and set(picks["strategy"]) == {"impact"}


def test_exploration_picks_carry_their_inclusion_probability() -> None:
    cands = _random_frame(80)
    picks = selection.select_reviews(cands, 20, _config(exploration_share=0.25), 11)
    explored = picks[picks["strategy"] == EXPLORATION]
    assert len(explored) == 5
    assert np.allclose(explored["propensity"], 5 / 80)
    assert (picks.loc[picks["strategy"] != EXPLORATION, "propensity"] == 1.0).all()
    assert explored["reason"].str.contains("6.25%").all()


@pytest.mark.parametrize("expected", [0.3, 2.5, 6.0])
def test_every_candidate_is_explored_with_the_stated_probability(expected: float) -> None:
    """Empirical inclusion frequency over many draws against expected / n, per row, also when
    the exploration slice is a fraction of one pick."""
    n, draws = 12, 6000
    counts = np.zeros(n)
    for seed in range(draws):
        counts[selection.explore(n, expected, np.random.default_rng(seed))] += 1
    p = expected / n
    tolerance = 4 * np.sqrt(p * (1 - p) / draws)
    assert np.abs(counts / draws - p).max() < tolerance


def test_the_same_seed_picks_the_same_cases_and_another_seed_explores_others() -> None:
    cands = _random_frame(300)
    config = _config(exploration_share=0.5)
    first = selection.select_reviews(cands, 40, config, 99)
    pd.testing.assert_frame_equal(first, selection.select_reviews(cands, 40, config, 99))
    other = selection.select_reviews(cands, 40, config, 100)
    explored = first["strategy"] == EXPLORATION
    assert set(first.loc[explored, "transaction_id"]) != set(
        other.loc[other["strategy"] == EXPLORATION, "transaction_id"]
    )
    now = datetime(2026, 3, 1, 6)
    assert selection.batch_seed(17, now, "tx-0") == selection.batch_seed(17, now, "tx-0")
    assert selection.batch_seed(17, now, "tx-0") != selection.batch_seed(17, now, "tx-1")


@pytest.mark.parametrize(
    ("hour", "used", "paced", "room"),
    [
        (0, 0, True, 17),  # ceil(400 / 24)
        (11, 0, True, 200),
        (11, 150, True, 50),
        (23, 0, True, 400),
        (23, 399, True, 1),
        (5, 300, True, 0),  # the router alone spent more than had accrued: never negative
        (0, 0, False, 400),
        (0, 450, False, 0),
    ],
)
def test_the_days_budget_accrues_hour_by_hour(hour: int, used: int, paced: bool, room: int) -> None:
    now = datetime(2026, 3, 1, hour, 59)
    assert selection.allowance(POLICY.review.daily_budget, used, now, paced) == room
