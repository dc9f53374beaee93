"""The weekly post-verify audit sample: the stratified draw (`pipeline.audit_sample.draw`) and
the error-rate estimate the weekly report shows (`monitoring.exploration.estimate_audit`)."""

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from flows.deployments import deployments
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR
from monitoring.exploration import estimate_audit
from pipeline.audit_sample import draw, week_of

SIZES = {"auto_approve": 10, "auto_reject": 3}


def _week(approved: int = 100, rejected: int = 20) -> pd.DataFrame:
    finals = ["auto_approve"] * approved + ["auto_reject"] * rejected
    return pd.DataFrame(
        {"transaction_id": [f"tx-{i:04d}" for i in range(len(finals))], "final_decision": finals}
    )


def test_each_stratum_gets_its_size_and_the_chance_n_over_n() -> None:
    picks = draw(_week(), SIZES, seed=1)
    by = picks.groupby("stratum")
    assert by.size().to_dict() == SIZES
    assert by["propensity"].unique().map(list).to_dict() == {
        "auto_approve": [10 / 100],
        "auto_reject": [3 / 20],
    }
    assert by["population"].first().to_dict() == {"auto_approve": 100, "auto_reject": 20}
    assert picks["transaction_id"].is_unique
    assert (picks["strategy"] == picks["stratum"]).all()
    kept = _week().set_index("transaction_id")["final_decision"]
    assert (kept[picks["transaction_id"]].to_numpy() == picks["stratum"].to_numpy()).all()


def test_the_same_seed_draws_the_same_sample_whatever_the_row_order() -> None:
    week = _week()
    first = draw(week, SIZES, seed=7)
    shuffled = draw(week.sample(frac=1.0, random_state=3), SIZES, seed=7)
    assert first["transaction_id"].tolist() == shuffled["transaction_id"].tolist()
    assert draw(week, SIZES, seed=8)["transaction_id"].tolist() != first["transaction_id"].tolist()


def test_transactions_already_in_a_queue_are_neither_drawn_nor_counted() -> None:
    week = _week()
    queued = {f"tx-{i:04d}" for i in range(0, 100, 2)} | {"tx-0100"}  # 50 allowed, 1 blocked
    picks = draw(week, SIZES, seed=1, excluded=queued)
    assert not set(picks["transaction_id"]) & queued
    assert picks.groupby("stratum")["population"].first().to_dict() == {
        "auto_approve": 50,
        "auto_reject": 19,
    }
    assert picks.loc[picks["stratum"] == "auto_approve", "propensity"].iloc[0] == 10 / 50


def test_a_stratum_smaller_than_its_size_is_taken_whole() -> None:
    picks = draw(_week(approved=100, rejected=2), SIZES, seed=1)
    blocked = picks[picks["stratum"] == "auto_reject"]
    assert len(blocked) == 2 and (blocked["propensity"] == 1.0).all()


def test_an_empty_week_draws_nothing() -> None:
    picks = draw(_week(0, 0), SIZES, seed=1)
    assert picks.empty and {"transaction_id", "stratum", "propensity"} <= set(picks.columns)


def test_the_week_ends_at_midnight() -> None:
    assert week_of(datetime(2026, 3, 9, 1, 30), 7) == (datetime(2026, 3, 2), datetime(2026, 3, 9))


def _cases(stratum: str, n: int, population: int, errors: int, answered: int) -> pd.DataFrame:
    """`n` audit cases of a stratum, `answered` of them answered, `errors` against it."""
    wrong = 1 if stratum == "auto_approve" else 0
    labels = [wrong] * errors + [1 - wrong] * (answered - errors) + [np.nan] * (n - answered)
    return pd.DataFrame({"strategy": stratum, "propensity": n / population, "is_fraud": labels})


def test_the_estimate_per_stratum_is_the_share_of_answers_against_the_decision() -> None:
    cases = pd.concat(
        [_cases("auto_approve", 10, 1000, 1, 8), _cases("auto_reject", 4, 40, 2, 4)],
        ignore_index=True,
    )
    approve, reject, overall = estimate_audit(cases, 0.95)
    assert (approve.sampled, approve.answered, approve.errors) == (10, 8, 1)
    assert approve.population == pytest.approx(1000)
    assert approve.estimate.rate == pytest.approx(1 / 8)
    assert approve.estimate.effective_n == pytest.approx(8)  # equal weights: every answer counts
    assert approve.estimate.low < 1 / 8 < approve.estimate.high
    assert reject.estimate.rate == pytest.approx(2 / 4)
    # over the strata each answer stands for N_h / answered_h decisions of its stratum
    assert overall.stratum == "all" and overall.population == pytest.approx(1040)
    assert overall.estimate.rate == pytest.approx((1000 / 8 * 1 + 40 / 4 * 2) / 1040)


def test_no_answer_yet_is_no_rate() -> None:
    approve, reject, overall = estimate_audit(_cases("auto_approve", 5, 50, 0, 0), 0.95)
    assert (approve.sampled, approve.answered, approve.estimate.rate) == (5, 0, None)
    assert reject.sampled == 0 and reject.estimate.rate is None
    assert overall.population == pytest.approx(50)


def test_no_error_seen_still_has_an_interval_above_zero() -> None:
    (approve, _, _) = estimate_audit(_cases("auto_approve", 20, 2000, 0, 20), 0.95)
    assert approve.estimate.rate == 0.0 and approve.estimate.high > 0.05  # noqa: PLR2004


def test_the_weekly_deployment_runs_on_the_policy_cron() -> None:
    policy = load_policy(PACKAGE_DIR / "policy.yaml")
    (made,) = [d for d in deployments(policy) if d.name == "audit-sample"]
    assert made.schedules[0].schedule.cron == policy.schedules.audit_sample_cron
    assert made.concurrency_limit == 1
