"""The monthly model QA's cohort figures and bias checks on frames where the answer is known,
and the monthly deployment's schedule from the policy."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from flows.deployments import deployments
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR
from monitoring.model_qa import cohort_table, largest_gaps, psi, weekly_scores
from monitoring.outcomes import OUTCOMES
from monitoring.segments import SEGMENTS

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
T = datetime(2026, 11, 2)


def month() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Amount band `low`: 40 legitimate, 4 of them declined; `high`: 40 legitimate, 12
    declined, and 10 frauds of which 8 flagged; `tiny`: 5 legitimate, all declined."""
    rows = []

    def add(band: str, n: int, fraud: bool, declined: bool, score: float) -> None:
        for _ in range(n):
            rows.append(
                {
                    "band": band,
                    "route": "auto_block" if declined else "auto_allow",
                    "final_decision": "auto_reject" if declined else "auto_approve",
                    "score": score,
                    "outcome": "fraud" if fraud else "legit",
                }
            )

    add("low", 4, False, True, 0.97)
    add("low", 36, False, False, 0.1)
    add("high", 12, False, True, 0.97)
    add("high", 28, False, False, 0.1)
    add("high", 8, True, True, 0.99)
    add("high", 2, True, False, 0.3)
    add("tiny", 5, False, True, 0.97)
    frame = pd.DataFrame(rows)
    frame["tx_datetime"] = [T + timedelta(hours=i) for i in range(len(frame))]
    outcome = pd.Series(pd.Categorical(frame.pop("outcome"), categories=OUTCOMES))
    band = frame.pop("band")
    segments = pd.DataFrame({name: "all" for name in SEGMENTS}, index=frame.index)
    segments["amount"] = band
    return frame, outcome, segments


def test_cohorts_have_their_own_precision_recall_and_false_declines() -> None:
    table = cohort_table(*month()).set_index(["segment", "band"])
    high = table.loc[(SEGMENTS["amount"], "high")]
    assert (high["decisions"], high["known"], high["fraud known"]) == (50, 50, 10)
    assert high["precision"] == pytest.approx(8 / 20)  # of the 20 flagged, 8 were fraud
    assert high["recall"] == pytest.approx(8 / 10)
    assert high["false-decline rate"] == pytest.approx(12 / 40)
    assert high["fraud rate"] == pytest.approx(10 / 50)
    expected = (12 * 0.97 + 28 * 0.1 + 8 * 0.99 + 2 * 0.3) / 50
    assert high["calibration gap"] == pytest.approx(expected - 10 / 50)
    assert table.loc[(SEGMENTS["amount"], "low"), "false-decline rate"] == pytest.approx(0.1)


def test_largest_gap_skips_cohorts_too_small_to_judge() -> None:
    gaps = largest_gaps(cohort_table(*month()), min_n=30)
    widest = gaps[0]
    assert (widest.measure, widest.segment) == ("false-decline rate", SEGMENTS["amount"])
    assert (widest.highest, widest.lowest) == ("high", "low")  # `tiny` (5 outcomes) left out
    assert widest.gap == pytest.approx(0.3 - 0.1)
    assert all(g.segment == SEGMENTS["amount"] for g in gaps)  # one cohort elsewhere: no gap


def test_psi_is_zero_for_the_same_scores_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(5)
    base = pd.Series(rng.beta(2, 8, 5000))
    assert psi(base, base) == pytest.approx(0.0)
    shifted = psi(base, pd.Series(np.clip(base + 0.2, 0, 1)))
    assert shifted is not None and shifted > 0.25  # noqa: PLR2004 - a large shift by any rule
    assert psi(base, pd.Series(dtype=float)) is None


def test_weekly_scores_are_cut_by_week() -> None:
    frame, _, _ = month()
    weeks = weekly_scores(frame, T, 7)
    assert weeks["decisions"].sum() == len(frame)
    assert weeks.iloc[0]["PSI vs first week"] == pytest.approx(0.0)


def test_monthly_model_qa_and_the_daily_drift_check_are_deployed() -> None:
    found = {d.name: d for d in deployments(POLICY)}
    monthly = found["monthly-model-qa"]
    assert monthly.schedules  # one, from the policy
    assert getattr(monthly.schedules[0].schedule, "cron", None) == POLICY.schedules.model_qa_cron
    assert monthly.concurrency_limit == 1
    assert found["drift-check"].parameters == {"report": False}  # the report is weekly
    assert found["qa-report"].parameters == {}
