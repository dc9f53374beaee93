"""The exploration estimate (monitoring.exploration) on a synthetic population with known truth:
drawn as the product draws (`pipeline.selection.explore`), batch by batch, with more picks where
the misses are more frequent, so an unweighted share is biased and the weighted one must not be."""

import numpy as np
import pandas as pd
import pytest

from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR
from monitoring.exploration import estimate_misses, weighted_rate, wilson
from pipeline.selection import explore

CONFIDENCE = load_policy(PACKAGE_DIR / "policy.yaml").active_learning.estimate_confidence
SEEDS = 400


def _population() -> list[np.ndarray]:
    """30 batches of auto-allowed decisions, each with its own fraud rate (0.5 % to 8 %)."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(200, 2000, 30)
    rates = rng.uniform(0.005, 0.08, 30)
    return [(rng.random(n) < r).astype(int) for n, r in zip(sizes, rates, strict=True)]


POPULATION = _population()
TRUTH = float(np.concatenate(POPULATION).mean())


def _sample(seed: int, per_batch: float) -> tuple[np.ndarray, np.ndarray]:
    """Exploration answers of every batch: riskier batches explore three times as much."""
    rng = np.random.default_rng(seed)
    hits, propensity = [], []
    for batch in POPULATION:
        expected = per_batch * (3 if batch.mean() > 0.04 else 1)  # noqa: PLR2004
        rows = explore(len(batch), expected, rng)
        hits.append(batch[rows])
        propensity.append(np.full(len(rows), expected / len(batch)))
    return np.concatenate(hits), np.concatenate(propensity)


@pytest.mark.parametrize("per_batch", [2.5, 10.0])
def test_the_weighted_estimate_is_unbiased_and_the_plain_share_is_not(per_batch: float) -> None:
    estimates, plain, totals = [], [], []
    for seed in range(SEEDS):
        hits, propensity = _sample(seed, per_batch)
        result = weighted_rate(hits, propensity, CONFIDENCE)
        estimates.append(result.rate)
        totals.append(result.total)
        plain.append(hits.mean())
    se = np.std(estimates) / np.sqrt(SEEDS)
    assert abs(np.mean(estimates) - TRUTH) < max(3 * se, 0.02 * TRUTH)
    # Horvitz-Thompson's total is exactly unbiased for the number of misses
    true_total = sum(int(b.sum()) for b in POPULATION)
    assert abs(np.mean(totals) - true_total) < 3 * np.std(totals) / np.sqrt(SEEDS)
    assert np.mean(plain) - TRUTH > 5 * np.std(plain) / np.sqrt(SEEDS)  # oversampled risk


@pytest.mark.parametrize("per_batch", [2.5, 10.0])
def test_the_interval_covers_the_truth_about_as_often_as_it_says(per_batch: float) -> None:
    covered = 0
    for seed in range(SEEDS):
        result = weighted_rate(*_sample(seed, per_batch), CONFIDENCE)
        assert result.low is not None and result.high is not None
        covered += result.low <= TRUTH <= result.high
    share = covered / SEEDS
    tolerance = 3 * np.sqrt(CONFIDENCE * (1 - CONFIDENCE) / SEEDS)
    assert abs(share - CONFIDENCE) < tolerance


def test_no_miss_seen_still_leaves_an_honest_interval() -> None:
    result = weighted_rate(np.zeros(50, dtype=int), np.full(50, 0.01), CONFIDENCE)
    assert result.rate == 0.0 and result.low == 0.0
    assert result.high == pytest.approx(wilson(0.0, 50, CONFIDENCE)[1])
    assert 0.05 < result.high < 0.1  # noqa: PLR2004 - about 3.8 / 50
    assert result.represented == pytest.approx(5000)


def test_no_answer_is_no_estimate() -> None:
    result = weighted_rate(np.array([], dtype=int), np.array([]), CONFIDENCE)
    assert result.rate is None and result.low is None and result.represented == 0


def test_a_miss_is_fraud_among_allowed_and_legitimate_among_blocked() -> None:
    answers = pd.DataFrame(
        {
            "final_decision": ["auto_approve"] * 4 + ["auto_reject"] * 2,
            "is_fraud": [1, 0, 0, 0, 1, 0],
            "propensity": [0.5, 0.5, 0.25, 0.25, 1.0, 1.0],
        }
    )
    allowed, blocked = estimate_misses(answers, CONFIDENCE)
    assert (allowed.segment, allowed.answered, allowed.misses) == ("fraud among auto-allowed", 4, 1)
    assert allowed.estimate.rate == pytest.approx(2 / 12)  # weights 2, 2, 4, 4
    assert allowed.estimate.represented == pytest.approx(12)
    assert (blocked.decision, blocked.misses, blocked.estimate.rate) == ("auto_reject", 1, 0.5)
