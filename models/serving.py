"""Score a batch end to end as plain functions: the scoring flow and the online API share them.

validate -> stored history -> features -> champion (+ SHAP) -> route -> decisions, audit, outbox.
No Prefect here: a flow wraps these steps in tasks, an API calls them with a warm model.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from fraudloop import decisions, labels
from fraudloop.decisions import ModelInfo
from fraudloop.policy import Policy
from fraudloop.schema import validate_batch
from models.features import FeatureConfig, compute_features
from models.scoring import ScoringModel


@dataclass
class BatchResult:
    scored: int
    new_decisions: int
    rejected: int
    fallback: bool


@dataclass
class Decided:
    """Decisions as stored, in the frame's order; `new` of them were not stored before."""

    decisions: list[dict[str, Any]]
    new: int
    fallback: bool


def feature_config(policy: Policy) -> FeatureConfig:
    return FeatureConfig(delay_days=policy.learning.chargeback_delay_days)


def batch_features(session: Session, frame: pd.DataFrame, cfg: FeatureConfig) -> pd.DataFrame:
    """Features from the stored history of the batch's customers and terminals only."""
    first, last = frame["tx_datetime"].min(), frame["tx_datetime"].max()
    since = first - timedelta(days=cfg.history_days)
    customers, terminals = frame["customer_id"].unique(), frame["terminal_id"].unique()
    hist = labels.history(session, since, first, customers, terminals)
    known = labels.history_labels(
        session, since, first, customers, terminals, frame["transaction_id"], known_before=last
    )
    return compute_features(hist, frame, known, cfg)


def predict(
    session: Session, model: ScoringModel | None, frame: pd.DataFrame, policy: Policy
) -> tuple[pd.DataFrame | None, ModelInfo | None, str | None]:
    """Scores and the model that made them; (None, None, error) means: use the fallback rules."""
    if model is None:
        return None, None, "no model loaded"
    try:
        scored = model.predict(batch_features(session, frame, feature_config(policy)))
    except Exception as exc:  # a broken artifact must not stop decisions: fallback rules decide
        return None, None, f"{type(exc).__name__}: {exc}"
    return scored, ModelInfo(model.name, str(model.version)), None


def score_batch(
    session: Session,
    records: list[dict[str, Any]],
    model: ScoringModel | None,
    policy: Policy,
    now: datetime,
) -> BatchResult:
    """The whole decision path for one batch, in the caller's transaction (idempotent)."""
    frame, rejected = validate_batch(records)
    decisions.quarantine(session, rejected, now)
    if frame.empty:
        return BatchResult(0, 0, len(rejected), fallback=False)
    done = decide(session, frame, model, policy, now)
    return BatchResult(len(frame), done.new, len(rejected), fallback=done.fallback)


def decide(
    session: Session,
    tx: pd.DataFrame,
    model: ScoringModel | None,
    policy: Policy,
    now: datetime,
) -> Decided:
    """Score, route and store transactions already validated (`schema.transactions_frame`)."""
    scored, info, _ = predict(session, model, tx, policy)
    labels.add_transactions(session, tx)
    batch = decisions.build_decisions(tx, scored, policy, info, now)
    return Decided(batch.decisions, decisions.save(session, batch), fallback=scored is None)
