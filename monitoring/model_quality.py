"""The model's quality on the outcomes that have matured (`monitoring.outcomes`).

Known outcomes are not a random sample: a reviewed case is labelled at once, an approved payment
after the chargeback delay, an auto-block only when an exploration pick drew it. So precision of
blocks rests on few labels, and recall is also estimated from the exploration slice
(`monitoring.exploration`), which stands for every automatic decision by inverse propensity.
"""

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.metrics import average_precision_score

from fraudloop.policy import REVIEW_ROUTES, Route
from monitoring.exploration import MissEstimate, wilson
from monitoring.outcomes import DECLINED, FRAUD, LEGIT, NEVER, PENDING, truth


class Rate(BaseModel):
    """A share of `n` with its Wilson interval (None when `n` is 0)."""

    hits: int
    n: int
    rate: float | None
    low: float | None
    high: float | None


class ReliabilityBin(BaseModel):
    lo: float
    hi: float
    n: int
    mean_score: float | None
    fraud_rate: float | None


class ModelQuality(BaseModel):
    decisions: int
    known: int
    pending: int  # approved payments younger than the chargeback delay, open cases
    never: int  # declined payments no label will reach
    fraud_known: int
    precision_blocks: Rate
    precision_reviews: Rate
    recall_labels: Rate  # of the frauds known, the share the final decision declined
    recall_exploration: float | None  # caught / (caught + missed), misses weighted by 1 / chance
    missed_estimate: float | None  # frauds among the auto-allowed, from the exploration answers
    average_precision: float | None
    brier: float | None
    reliability: list[ReliabilityBin]


def rate(hits: int, n: int, confidence: float) -> Rate:
    if n == 0:
        return Rate(hits=0, n=0, rate=None, low=None, high=None)
    low, high = wilson(hits / n, n, confidence)
    return Rate(hits=hits, n=n, rate=hits / n, low=low, high=high)


def reliability(score: pd.Series, y: pd.Series, bins: int) -> list[ReliabilityBin]:
    """Mean score against the fraud rate in equal-width score bins: a calibrated model's points
    lie on the diagonal."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(
        np.searchsorted(edges, score.to_numpy(dtype=float), side="right") - 1, 0, bins - 1
    )
    out = []
    for i in range(bins):
        inside = which == i
        n = int(inside.sum())
        out.append(
            ReliabilityBin(
                lo=float(edges[i]),
                hi=float(edges[i + 1]),
                n=n,
                mean_score=float(score[inside].mean()) if n else None,
                fraud_rate=float(y[inside].mean()) if n else None,
            )
        )
    return out


def _precision(frame: pd.DataFrame, outcome: pd.Series, routes: list[str], level: float) -> Rate:
    chosen = frame["route"].isin(routes) & outcome.isin([FRAUD, LEGIT])
    return rate(int((outcome[chosen] == FRAUD).sum()), int(chosen.sum()), level)


def _by_decision(misses: list[MissEstimate], decision: str) -> float | None:
    return next((m.estimate.rate for m in misses if m.decision == decision), None)


def exploration_recall(
    frame: pd.DataFrame, outcome: pd.Series, misses: list[MissEstimate], block_precision: Rate
) -> tuple[float | None, float | None]:
    """(recall, frauds missed among the auto-allowed): the auto-allowed's fraud share and the
    auto-blocked's legitimate share come from the exploration estimate; where no pick of the
    auto-blocked was answered, the labelled blocks' precision stands in."""
    fraud_in_allowed = _by_decision(misses, "auto_approve")
    legit_in_blocked = _by_decision(misses, "auto_reject")
    block_fraud = 1 - legit_in_blocked if legit_in_blocked is not None else block_precision.rate
    if fraud_in_allowed is None or block_fraud is None:
        return None, None
    final = frame["final_decision"]
    missed = fraud_in_allowed * int((final == "auto_approve").sum())
    missed += int(((final == "human_approve") & (outcome == FRAUD)).sum())
    caught = block_fraud * int((final == "auto_reject").sum())
    caught += int(((final == "human_reject") & (outcome == FRAUD)).sum())
    total = caught + missed
    return (caught / total if total else None), missed


def model_quality(
    frame: pd.DataFrame,
    outcome: pd.Series,
    misses: list[MissEstimate],
    confidence: float,
    bins: int,
) -> ModelQuality:
    """`frame`: the period's decisions (route, final_decision, score), `outcome` aligned."""
    known = outcome.isin([FRAUD, LEGIT])
    y = truth(outcome)
    scored = known & frame["score"].notna()
    s, t = frame.loc[scored, "score"].astype(float), y[scored]
    both = t.nunique() == 2  # noqa: PLR2004 - fraud and legitimate
    blocks = _precision(frame, outcome, [Route.AUTO_BLOCK.value], confidence)
    fraud = outcome == FRAUD
    caught = fraud & frame["final_decision"].isin(DECLINED)
    recall, missed = exploration_recall(frame, outcome, misses, blocks)
    return ModelQuality(
        decisions=len(frame),
        known=int(known.sum()),
        pending=int((outcome == PENDING).sum()),
        never=int((outcome == NEVER).sum()),
        fraud_known=int(fraud.sum()),
        precision_blocks=blocks,
        precision_reviews=_precision(frame, outcome, [r.value for r in REVIEW_ROUTES], confidence),
        recall_labels=rate(int(caught.sum()), int(fraud.sum()), confidence),
        recall_exploration=recall,
        missed_estimate=missed,
        average_precision=float(average_precision_score(t, s)) if both else None,
        brier=float(((s - t) ** 2).mean()) if len(t) else None,
        reliability=reliability(s, t, bins),
    )
