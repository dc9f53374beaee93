"""The decision pipeline as plain functions: the scoring flow and the online API both call it.

validate -> stored history -> features -> champion (+ SHAP) -> route -> decisions, audit, outbox
-> (batches) active-learning picks within the day's review budget (`pipeline.selection`).
Without a model (or on its error) the fallback rules route, the batch's flagged cards read at once.
No Prefect here: a flow wraps these steps in tasks, an API calls them with a warm model.
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fraudloop import decisions, labels
from fraudloop.decisions import DecisionBatch
from fraudloop.policy import ACTIVE_LEARNING_QUEUE, REVIEW_ROUTES, Policy
from fraudloop.schema import validate_batch
from fraudloop.storage import ReviewTask
from models.scoring import ScoringModel
from pipeline import selection
from pipeline.features import RunHistory, batch_features, feature_config
from pipeline.route import ModelInfo, build_decisions, learning_cases

# the cases a day's review budget counts: the router's (mandatory) and the picks beyond them
BUDGET_QUEUES = [*(r.value for r in REVIEW_ROUTES), ACTIVE_LEARNING_QUEUE]


@dataclass
class BatchResult:
    scored: int
    new_decisions: int
    rejected: int
    fallback: bool
    picked: int = 0  # active-learning review cases added within the day's budget

    @classmethod
    def total(cls, results: list["BatchResult"]) -> "BatchResult":
        """Several batches as one; fallback if any batch fell back."""
        return cls(
            scored=sum(r.scored for r in results),
            new_decisions=sum(r.new_decisions for r in results),
            rejected=sum(r.rejected for r in results),
            fallback=any(r.fallback for r in results),
            picked=sum(r.picked for r in results),
        )


@dataclass
class Decided:
    """Decisions as stored, in the frame's order; `new` of them were not stored before."""

    decisions: list[dict[str, Any]]
    new: int
    fallback: bool
    picked: int = 0


def predict(
    session: Session,
    model: ScoringModel | None,
    frame: pd.DataFrame,
    policy: Policy,
    run: RunHistory | None = None,
) -> tuple[pd.DataFrame | None, ModelInfo | None, str | None]:
    """Scores and the model that made them; (None, None, error) means: use the fallback rules."""
    if model is None:
        return None, None, "no model loaded"
    try:
        scored = model.predict(batch_features(session, frame, feature_config(policy), run))
    except Exception as exc:  # a broken artifact must not stop decisions: fallback rules decide
        return None, None, f"{type(exc).__name__}: {exc}"
    return scored, ModelInfo(model.name, str(model.version)), None


def score_batch(
    session: Session,
    records: list[dict[str, Any]],
    model: ScoringModel | None,
    policy: Policy,
    now: datetime,
    run: RunHistory | None = None,
) -> BatchResult:
    """The whole decision path for one batch, in the caller's transaction (idempotent); `run`
    when it is one of several consecutive batches (see `RunHistory`)."""
    frame, rejected = validate_batch(records, policy.limits)
    decisions.quarantine(session, rejected, now, policy.limits.quarantine_record_bytes)
    if frame.empty:
        return BatchResult(0, 0, len(rejected), fallback=False)
    done = decide(session, frame, model, policy, now, run, select_reviews=True)
    return BatchResult(len(frame), done.new, len(rejected), done.fallback, done.picked)


def decide(
    session: Session,
    tx: pd.DataFrame,
    model: ScoringModel | None,
    policy: Policy,
    now: datetime,
    run: RunHistory | None = None,
    select_reviews: bool = False,
) -> Decided:
    """Score, route and store transactions already validated (`schema.transactions_frame`);
    with `select_reviews` (batches: an online request of one has nothing to choose among),
    add active-learning picks within the day's budget. A retried batch picks nothing again."""
    scored, info, _ = predict(session, model, tx, policy, run)
    flagged = card_flags(session, tx, policy, now) if scored is None else {}
    batch = build_decisions(tx, scored, policy, info, now, flagged)
    # the picks are chosen before the first write: the store's write lock (and the audit
    # chain's) is then held for the inserts only, not for the selection
    picks = DecisionBatch()
    if select_reviews and scored is not None:
        router = sum(r["queue"] in BUDGET_QUEUES for r in batch.reviews)
        picks = choose_picks(session, tx, scored, batch, policy, now, unsaved=router)
    labels.add_transactions(session, tx)
    new = decisions.save(session, batch)
    picked = 0
    if new and picks.reviews:  # a retried batch picks nothing again
        decisions.save(session, picks)
        picked = len(picks.reviews)
    return Decided(batch.decisions, new, fallback=scored is None, picked=picked)


def card_flags(
    session: Session, tx: pd.DataFrame, policy: Policy, now: datetime
) -> dict[str, labels.CardFlag]:
    """The batch's cards flagged within `fallback.flagged_card_days`, for the fallback card
    rule: one query for the batch, none while the model decides or the rule is off."""
    days = policy.fallback.flagged_card_days
    if days is None:
        return {}
    return labels.flagged_cards(
        session,
        tx["customer_id"].unique().tolist(),
        tx["transaction_id"].tolist(),
        now - timedelta(days=days),
        now,
    )


def choose_picks(
    session: Session,
    tx: pd.DataFrame,
    scored: pd.DataFrame,
    routed: DecisionBatch,
    policy: Policy,
    now: datetime,
    unsaved: int = 0,
) -> DecisionBatch:
    """The batch's active-learning picks as review cases, as many as the day's budget has room
    for, counting `unsaved` router reviews not stored yet; reads only. A day whose budget is
    spent costs one count query."""
    config = policy.active_learning
    used = reviews_on_day(session, now) + unsaved
    room = selection.allowance(policy.review.daily_budget, used, now, config.pace_hourly)
    if room <= 0:
        return DecisionBatch()
    batch = pd.DataFrame(
        {
            "transaction_id": tx["transaction_id"].to_numpy(),
            "route": [d["route"] for d in routed.decisions],
            "score": scored["score"].to_numpy(),
            "confidence": scored["confidence"].to_numpy(),
            "amount": tx["amount"].to_numpy(),
            "reasons": scored["reasons"].to_numpy(),
        }
    )
    cands = selection.candidates(batch)
    if cands.empty:
        return DecisionBatch()
    seed = selection.batch_seed(config.seed, now, str(cands["transaction_id"].iloc[0]))
    picks = selection.select_reviews(cands, room, config, seed)
    return learning_cases(picks, cands, policy, now)


def reviews_on_day(session: Session, now: datetime) -> int:
    """Review cases the budget has counted on `now`'s UTC day (the router's and the picks),
    by when they were opened: with their decision, so by `decided_at`."""
    day = datetime.combine(now.date(), time())
    stmt = (
        select(func.count())
        .select_from(ReviewTask)
        .where(ReviewTask.queue.in_(BUDGET_QUEUES))
        .where(ReviewTask.created_at >= day, ReviewTask.created_at < day + timedelta(days=1))
    )
    return int(session.scalar(stmt) or 0)
