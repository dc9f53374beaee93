"""Features of stored transactions, computed as scoring computes them (one code path with
training: `models.features.compute_features` over the past only)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from fraudloop import labels
from fraudloop.policy import Policy
from models.config import ModelConfig, packaged_model_config
from models.features import FeatureConfig, compute_features


def model_config(policy: Policy) -> ModelConfig:
    """The packaged model config with the policy's chargeback delay: the policy decides when a
    label counts as known, for training and scoring alike."""
    return packaged_model_config().with_delay(policy.learning.chargeback_delay_days)


def feature_config(policy: Policy) -> FeatureConfig:
    return model_config(policy).features


@dataclass
class RunHistory:
    """The stored transactions a run of batches in time order is scored against, kept between
    batches so that each reads only what was stored since the one before.

    A batch alone reads its customers' and terminals' whole history window
    (`FeatureConfig.history_days`). Batch after batch of one long window (the scoring flow's
    chunks, `bench scoring`), that read the same rows again and again, a cost that grew with
    the window (`benchmarks/RESULTS.md`). A run reads the first batch's
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


def window_features(
    session: Session, start: datetime, end: datetime, cfg: FeatureConfig
) -> pd.DataFrame:
    """Features of the stored transactions in [start, end), as scoring computed them."""
    hist = labels.history(session, since=start - timedelta(days=cfg.history_days), until=end)
    known = labels.labels(session, known_before=end)
    window = hist[hist["tx_datetime"] >= start]
    return compute_features(hist[hist["tx_datetime"] < start], window, known, cfg)
