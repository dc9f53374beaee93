"""Score a batch end to end as plain functions: the scoring flow and the online API share them.

validate -> stored history -> features -> champion (+ SHAP) -> route -> decisions, audit, outbox.
No Prefect here: a flow wraps these steps in tasks, an API calls them with a warm model.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
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


def feature_config(policy: Policy) -> FeatureConfig:
    return FeatureConfig(delay_days=policy.learning.chargeback_delay_days)


@dataclass
class RunHistory:
    """The stored transactions a run of batches in time order is scored against, kept between
    batches so that each reads only what was stored since the one before.

    A batch alone reads its customers' and terminals' whole history window (38 days with the
    default features). Batch after batch of one long window (the scoring flow's chunks,
    `bench scoring`), that read the same rows again and again: at 10,000-row batches it was the
    largest cost after the model, and it grew with the window. A run reads the first batch's
    window once (of every customer and terminal: other customers' rows change no feature), then
    per batch only [previous batch's first time, this batch's first time) (the previous batch's
    own transactions and whatever else was stored for that time) and drops what left the window.

    Not seen: transactions stored during the run for a time the run has already read past (as
    within one batch). Labels are read for every batch (reviews and chargebacks arrive anytime),
    those of the whole window (`labels.window_labels`), as the history is the whole window's.
    """

    frame: pd.DataFrame | None = None
    since: datetime | None = None
    until: datetime | None = None

    def window(self, session: Session, since: datetime, until: datetime) -> pd.DataFrame:
        """Stored transactions in [since, until), as `labels.history` reads them."""
        if (  # the first batch, or not the next one of the run: read it all
            self.frame is None
            or self.since is None
            or self.until is None
            or since < self.since
            or until < self.until
        ):
            self.frame = labels.history(session, since, until)
        else:
            kept = self.frame[self.frame["tx_datetime"].to_numpy() >= np.datetime64(since)]
            newer = labels.history(session, self.until, until)
            self.frame = pd.concat([kept, newer], ignore_index=True)
        self.since, self.until = since, until
        return self.frame


def batch_features(
    session: Session, frame: pd.DataFrame, cfg: FeatureConfig, run: RunHistory | None = None
) -> pd.DataFrame:
    """Features from the stored history: of the batch's customers and terminals only, or what
    the run (see `RunHistory`) keeps."""
    first, last = frame["tx_datetime"].min(), frame["tx_datetime"].max()
    since = first - timedelta(days=cfg.history_days)
    ids = frame["transaction_id"]
    if run is None:
        customers, terminals = frame["customer_id"].unique(), frame["terminal_id"].unique()
        hist = labels.history(session, since, first, customers, terminals)
        known = labels.history_labels(
            session, since, first, customers, terminals, ids, known_before=last
        )
    else:
        hist = run.window(session, since.to_pydatetime(), first.to_pydatetime())
        known = labels.window_labels(session, since, first, ids, known_before=last)
    return compute_features(hist, frame, known, cfg)


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
    batch = decisions.build_decisions(tx, scored, policy, info, now)
    return Decided(batch.decisions, decisions.save(session, batch), fallback=scored is None)
