"""The weekly post-verify audit sample: a stratified simple random sample of the week's automatic
decisions, one stratum per final decision (`report.audit_sample`), opened as label-only cases
of the post-verify queue.

Post-verify: the automatic decision already stands; an answer becomes a label and never a
decision (`labeling.review.answers`). Each case keeps its inclusion probability n_h / N_h as its
propensity, so the weekly report weights answers by 1 / propensity (`monitoring.exploration`).
The population is the week's automatic decisions nobody reviews otherwise: a transaction
already in any review queue (an active-learning pick, say) is left out of N_h, and the estimate
covers the automatic decisions no person looked at.

`draw` is pure; `open_week` reads the week and stores its cases in the caller's transaction.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import decisions
from fraudloop.policy import POST_VERIFY_QUEUE, Policy
from fraudloop.storage import Decision, ReviewTask, read_frame
from pipeline.route import FINAL_FOR_ROUTE, learning_cases
from pipeline.selection import batch_seed

STRATA = tuple(FINAL_FOR_ROUTE.values())  # auto_approve, auto_reject
AUTO_ROUTES = [r.value for r in FINAL_FOR_ROUTE]
DETAILS = ("stratum", "population", "sample_size", "week_start", "week_end")  # in the audit event
DRAWN = ("transaction_id", "strategy", "stratum", "propensity", "population", "sample_size")


def draw(
    decided: pd.DataFrame,
    sizes: Mapping[str, int],
    seed: int,
    excluded: Collection[str] = (),
) -> pd.DataFrame:
    """Per stratum h (final decision), min(n_h, N_h) of its N_h eligible rows of `decided`
    (`transaction_id`, `final_decision`) drawn without replacement, each with its inclusion
    probability n_h / N_h (`propensity`); rows in `excluded` are not eligible. The same rows
    and seed draw the same sample, whatever order the rows came in."""
    eligible = decided[~decided["transaction_id"].isin(list(excluded))]
    eligible = eligible.sort_values("transaction_id", kind="stable")
    rng = np.random.default_rng(seed)
    parts = []
    for stratum, wanted in sizes.items():
        ids = eligible.loc[eligible["final_decision"] == stratum, "transaction_id"].to_numpy()
        n = min(wanted, len(ids))
        if n == 0:
            continue
        chosen = np.sort(rng.choice(len(ids), size=n, replace=False))
        parts.append(
            pd.DataFrame(
                {
                    "transaction_id": ids[chosen],
                    "strategy": stratum,
                    "stratum": stratum,
                    "propensity": n / len(ids),
                    "population": len(ids),
                    "sample_size": n,
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(DRAWN))


def week_of(week_end: datetime, days: int) -> tuple[datetime, datetime]:
    """The sampled week: the `days` before `week_end`'s midnight (UTC), by payment time."""
    end = datetime.combine(week_end.date(), time())
    return end - timedelta(days=days), end


@dataclass
class SampleResult:
    """What one week's run did: cases opened per stratum, or why none were."""

    week_start: datetime
    week_end: datetime
    opened: dict[str, int] = field(default_factory=dict)
    population: dict[str, int] = field(default_factory=dict)
    already_sampled: int = 0  # post-verify cases the week had before this run


def open_week(session: Session, policy: Policy, week_end: datetime, now: datetime) -> SampleResult:
    """Draw the week before `week_end` and open its post-verify cases, once: a week (or any
    part of it) that already has post-verify cases opens nothing new, so a rerun, or a run by
    hand after the schedule's, cannot change the chances its cases were drawn with."""
    config = policy.report.audit_sample
    start, end = week_of(week_end, policy.report.weekly_days)
    result = SampleResult(start, end)
    result.already_sampled = len(_queued(session, start, end, POST_VERIFY_QUEUE))
    if result.already_sampled:
        return result
    decided = _automatic(session, start, end)
    seed = batch_seed(config.seed, end, POST_VERIFY_QUEUE)
    picks = draw(decided, config.sizes(), seed, _queued(session, start, end))
    for stratum in STRATA:
        mine = picks[picks["stratum"] == stratum]
        result.opened[stratum] = len(mine)
        result.population[stratum] = int(mine["population"].iloc[0]) if len(mine) else 0
    if picks.empty:
        return result
    picks["reason"] = [
        f"weekly post-verify audit: {n} of the {big_n} {stratum} decisions of "
        f"{start:%Y-%m-%d} to {end:%Y-%m-%d}, drawn at random (chance {n / big_n:.4g})"
        for stratum, n, big_n in zip(
            picks["stratum"], picks["sample_size"], picks["population"], strict=True
        )
    ]
    picks["week_start"], picks["week_end"] = start.isoformat(), end.isoformat()
    cands = decided[decided["transaction_id"].isin(picks["transaction_id"])]
    cases = learning_cases(picks, cands, policy, now, POST_VERIFY_QUEUE, DETAILS)
    decisions.save(session, cases)
    return result


def _automatic(session: Session, start: datetime, end: datetime) -> pd.DataFrame:
    """The week's automatic decisions (by payment time) still standing as the router made them;
    only the columns the draw and the cases need (a week is over a million decisions)."""
    stmt = select(
        Decision.transaction_id, Decision.final_decision, Decision.score, Decision.amount
    ).where(
        Decision.tx_datetime >= start,
        Decision.tx_datetime < end,
        Decision.route.in_(AUTO_ROUTES),
        Decision.final_decision.in_(list(STRATA)),
    )
    frame = read_frame(session, stmt)
    # a fallback decision has no score: None, which the case's priority counts as certain fraud
    frame["score"] = frame["score"].astype(object).where(frame["score"].notna(), None)
    return frame


def _queued(session: Session, start: datetime, end: datetime, queue: str | None = None) -> set[str]:
    """Transactions of the week with a review case (in `queue`, or in any queue)."""
    stmt = (
        select(ReviewTask.transaction_id)
        .join(Decision, Decision.transaction_id == ReviewTask.transaction_id)
        .where(Decision.tx_datetime >= start, Decision.tx_datetime < end)
    )
    if queue is not None:
        stmt = stmt.where(ReviewTask.queue == queue)
    return set(session.scalars(stmt))
