"""What the automatic decisions miss, estimated without bias from the exploration answers.

An exploration pick was drawn at random with a known inclusion probability, its propensity
(`pipeline.selection.explore`). Weighting each answer by 1 / propensity (Horvitz-Thompson) makes
the answered picks stand for every automatic decision that could have been drawn; the rate is
Hajek's ratio of weighted misses to weighted picks. Its interval is Wilson's on an effective
sample size (from the linearised variance, or Kish's when no miss was seen), which stays honest
at a rate of zero, where a normal interval would shrink to [0, 0].

Only answered picks count: an unanswered one is taken as missing at random. The estimate covers
the automatic decisions that had a chance to be drawn: those of batches that explored.
"""

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
from pydantic import BaseModel

# the automatic decision -> what a miss is (the label that says the decision was wrong)
SEGMENTS = {
    "auto_approve": ("fraud among auto-allowed", 1),
    "auto_reject": ("legitimate among auto-blocked", 0),
}


class WeightedRate(BaseModel):
    """A share estimated from a weighted sample: Hajek's rate, a Wilson interval around it."""

    rate: float | None
    low: float | None
    high: float | None
    total: float  # Horvitz-Thompson: how many of the represented decisions are misses
    represented: float  # sum of weights: how many decisions the answered picks stand for
    effective_n: float


class MissEstimate(BaseModel):
    """One automatic decision's misses over a period, as the QA meeting reads it."""

    segment: str
    decision: str
    answered: int
    misses: int  # answered picks the reviewer labelled against the automatic decision
    estimate: WeightedRate
    confidence: float


def weighted_rate(hits: np.ndarray, propensity: np.ndarray, confidence: float) -> WeightedRate:
    """The share of `hits` (0/1) in the population the sample was drawn from, each unit drawn
    with its `propensity` (inclusion probability, > 0)."""
    if len(hits) == 0:
        return WeightedRate(
            rate=None, low=None, high=None, total=0.0, represented=0.0, effective_n=0.0
        )
    w = 1.0 / np.asarray(propensity, dtype=float)
    y = np.asarray(hits, dtype=float)
    represented, total = float(w.sum()), float((w * y).sum())
    rate = total / represented
    # linearised variance, sampling taken as with replacement (a little wider than without)
    variance = float((w**2 * (y - rate) ** 2).sum()) / represented**2
    kish = represented**2 / float((w**2).sum())
    n_eff = min(len(y), rate * (1 - rate) / variance) if variance > 0 else kish
    low, high = wilson(rate, n_eff, confidence)
    return WeightedRate(
        rate=rate, low=low, high=high, total=total, represented=represented, effective_n=n_eff
    )


def wilson(rate: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson's score interval for a share seen in `n` (possibly fractional) trials."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    z2n = z * z / n
    center = (rate + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(rate * (1 - rate) / n + z2n / (4 * n))
    return max(0.0, center - half), min(1.0, center + half)


def estimate_misses(answers: pd.DataFrame, confidence: float) -> list[MissEstimate]:
    """Per automatic decision, the share it got wrong. `answers`: one row per answered
    exploration pick, `final_decision` (the automatic one), `is_fraud` (the reviewer's label),
    `propensity`."""
    out = []
    for decision, (segment, wrong) in SEGMENTS.items():
        rows = answers[answers["final_decision"] == decision]
        hits = (rows["is_fraud"].to_numpy(dtype=int) == wrong).astype(int)
        out.append(
            MissEstimate(
                segment=segment,
                decision=decision,
                answered=len(rows),
                misses=int(hits.sum()),
                estimate=weighted_rate(hits, rows["propensity"].to_numpy(dtype=float), confidence),
                confidence=confidence,
            )
        )
    return out


class AuditEstimate(BaseModel):
    """One stratum of the weekly post-verify audit sample (or `all`, the strata together)."""

    stratum: str  # the automatic decision, or "all"
    segment: str
    population: float  # decisions the sample was drawn from (sum of 1 / propensity)
    sampled: int
    answered: int
    errors: int  # answered cases the reviewer labelled against the automatic decision
    estimate: WeightedRate
    confidence: float


def estimate_audit(cases: pd.DataFrame, confidence: float) -> list[AuditEstimate]:
    """Per stratum of the audit sample, and over the strata, the share of automatic decisions
    that were wrong. `cases`: one row per post-verify case, `strategy` (its stratum),
    `propensity` (n_h / N_h), `is_fraud` (the answer's label, NaN while unanswered).

    An answer stands for N_h / a_h decisions of its stratum (a_h answered of n_h drawn): the
    unanswered are taken as missing at random within their stratum, and the strata then add up
    to the automatic decisions as made, whatever share of each was answered."""
    stratum = cases["strategy"].astype(str)
    drawn = stratum.map(stratum.value_counts())
    answered = cases["is_fraud"].notna()
    replied = stratum[answered].value_counts()
    wrong = {d: w for d, (_, w) in SEGMENTS.items()}
    frame = pd.DataFrame(
        {
            "stratum": stratum,
            "answered": answered,
            "population": 1.0 / cases["propensity"].astype(float),
            "chance": cases["propensity"].astype(float) * stratum.map(replied) / drawn,
            "error": cases["is_fraud"] == stratum.map(wrong),
        }
    )
    out = []
    groups = [(d, segment) for d, (segment, _) in SEGMENTS.items()]
    for name, segment in [*groups, ("all", "wrong among automatic decisions")]:
        rows = frame if name == "all" else frame[frame["stratum"] == name]
        done = rows[rows["answered"]]
        hits = done["error"].to_numpy(dtype=int)
        out.append(
            AuditEstimate(
                stratum=name,
                segment=segment,
                population=float(rows["population"].sum()),
                sampled=len(rows),
                answered=len(done),
                errors=int(hits.sum()),
                estimate=weighted_rate(hits, done["chance"].to_numpy(dtype=float), confidence),
                confidence=confidence,
            )
        )
    return out
