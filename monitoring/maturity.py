"""This week's precision and recall before its labels exist, and how far such estimates were off.

Chargebacks arrive days late, so when the QA meeting sits this week's misses are unknown.
Confidence-based performance estimation (CBPE, as NannyML does it) reads them from the scores:
a calibrated score is the chance the payment is fraud, so over the payments the model flagged
(sent to a person or blocked) the expected frauds are the sum of their scores, and over those it
let through the expected misses are the sum of theirs. Its one assumption is calibration, which
the reliability curve shows and which the earlier weeks test: each earlier week's estimate,
made the same way from its scores alone, stands beside its realised value as its labels
matured (`monitoring.outcomes`), day by day after the week ended (the label-maturity curve).

Earlier weeks are read as a random sample (`report.sample_rows`): a share needs no more.
"""

from datetime import datetime, timedelta

import pandas as pd
from pydantic import BaseModel

from fraudloop.policy import Route
from monitoring.outcomes import FRAUD, LEGIT, outcomes


class Estimate(BaseModel):
    """CBPE over one period's scored decisions."""

    scored: int
    flagged: int
    expected_frauds: float
    precision: float | None
    recall: float | None


class MaturityPoint(BaseModel):
    """The realised values of one period as known `lag_days` after it ended."""

    lag_days: int
    known_share: float  # of the period's decisions, those whose outcome was known by then
    precision: float | None
    recall: float | None


class WeekMaturity(BaseModel):
    start: datetime
    end: datetime
    sampled: int
    decisions: int
    estimate: Estimate
    realised: list[MaturityPoint]
    precision_error: float | None  # estimate minus the latest realised value
    recall_error: float | None


def flagged(frame: pd.DataFrame) -> pd.Series:
    """What the model flagged: every route but auto-allow (a person or a block)."""
    return frame["route"].astype(str) != Route.AUTO_ALLOW.value


def cbpe(score: pd.Series, flag: pd.Series) -> Estimate:
    p = score.astype(float)
    tp = float(p[flag].sum())
    fn = float(p[~flag].sum())
    n_flagged = int(flag.sum())
    return Estimate(
        scored=len(p),
        flagged=n_flagged,
        expected_frauds=tp + fn,
        precision=tp / n_flagged if n_flagged else None,
        recall=tp / (tp + fn) if tp + fn > 0 else None,
    )


def realised(flag: pd.Series, outcome: pd.Series, lag_days: int) -> MaturityPoint:
    known = outcome.isin([FRAUD, LEGIT])
    fraud = outcome == FRAUD
    judged = flag & known
    return MaturityPoint(
        lag_days=lag_days,
        known_share=float(known.mean()) if len(known) else 0.0,
        precision=float(fraud[judged].mean()) if judged.any() else None,
        recall=float(flag[fraud].mean()) if fraud.any() else None,
    )


def split_sample(sample: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`qa_data.sample_decisions`' rows (one per label) as decisions and their labels."""
    decisions = sample.drop_duplicates("transaction_id").reset_index(drop=True)
    labelled = sample[sample["label_is_fraud"].notna()]
    labels = pd.DataFrame(
        {
            "transaction_id": labelled["transaction_id"].to_numpy(),
            "is_fraud": labelled["label_is_fraud"].astype(int).to_numpy(),
            "known_at": labelled["label_known_at"].to_numpy(),
        }
    )
    return decisions[decisions["score"].notna()].reset_index(drop=True), labels


def week_maturity(
    sample: pd.DataFrame,
    start: datetime,
    end: datetime,
    as_of: datetime,
    decisions: int,
    delay_days: int,
    horizon_days: int,
) -> WeekMaturity:
    """One period's estimate and its realised values, known 0, 1, ... days after `end` up to
    `as_of` (at most `horizon_days`: by then every approved payment has matured)."""
    frame, labels = split_sample(sample)
    flag = flagged(frame)
    estimate = cbpe(frame["score"], flag)
    last = min(int((as_of - end).total_seconds() // 86_400), horizon_days)
    points = [
        realised(flag, outcomes(frame, labels, end + timedelta(days=lag), delay_days), lag)
        for lag in range(0, max(last, 0) + 1)
    ]
    final = points[-1]
    return WeekMaturity(
        start=start,
        end=end,
        sampled=len(frame),
        decisions=decisions,
        estimate=estimate,
        realised=points,
        precision_error=_error(estimate.precision, final.precision),
        recall_error=_error(estimate.recall, final.recall),
    )


def _error(estimate: float | None, value: float | None) -> float | None:
    return None if estimate is None or value is None else estimate - value


def mean_abs_error(weeks: list[WeekMaturity], field: str) -> float | None:
    errors = [abs(e) for w in weeks if (e := getattr(w, field)) is not None]
    return sum(errors) / len(errors) if errors else None
