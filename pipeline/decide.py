"""The decision pipeline as plain functions: the scoring flow and the online API both call it.

validate -> stored history -> features -> champion (+ SHAP) -> route -> decisions, audit, outbox.
No Prefect here: a flow wraps these steps in tasks, an API calls them with a warm model.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from fraudloop import decisions, labels
from fraudloop.policy import Policy
from fraudloop.schema import validate_batch
from models.scoring import ScoringModel
from pipeline.features import RunHistory, batch_features, feature_config
from pipeline.route import ModelInfo, build_decisions


@dataclass
class BatchResult:
    scored: int
    new_decisions: int
    rejected: int
    fallback: bool

    @classmethod
    def total(cls, results: list["BatchResult"]) -> "BatchResult":
        """Several batches as one; fallback if any batch fell back."""
        return cls(
            scored=sum(r.scored for r in results),
            new_decisions=sum(r.new_decisions for r in results),
            rejected=sum(r.rejected for r in results),
            fallback=any(r.fallback for r in results),
        )


@dataclass
class Decided:
    """Decisions as stored, in the frame's order; `new` of them were not stored before."""

    decisions: list[dict[str, Any]]
    new: int
    fallback: bool


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
    frame, rejected = validate_batch(records)
    decisions.quarantine(session, rejected, now)
    if frame.empty:
        return BatchResult(0, 0, len(rejected), fallback=False)
    done = decide(session, frame, model, policy, now, run)
    return BatchResult(len(frame), done.new, len(rejected), fallback=done.fallback)


def decide(
    session: Session,
    tx: pd.DataFrame,
    model: ScoringModel | None,
    policy: Policy,
    now: datetime,
    run: RunHistory | None = None,
) -> Decided:
    """Score, route and store transactions already validated (`schema.transactions_frame`)."""
    scored, info, _ = predict(session, model, tx, policy, run)
    labels.add_transactions(session, tx)
    batch = build_decisions(tx, scored, policy, info, now)
    return Decided(batch.decisions, decisions.save(session, batch), fallback=scored is None)
