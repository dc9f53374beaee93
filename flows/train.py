"""Train a model from a transaction source: load its history and labels, then the retrain path."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.chargebacks import arrived_chargebacks
from flows.retrain import challenge
from flows.runtime import Runtime, runtime
from fraudloop import labels
from fraudloop.labels import HISTORY_COLUMNS
from fraudloop.storage import open_session


@task(cache_policy=NO_CACHE)
def ingest_history(rt: Runtime, source: Path, as_of: datetime) -> int:
    """Transactions before `as_of` and the chargebacks known by then, into the store (idempotent)."""
    tx = pd.read_parquet(
        source, columns=HISTORY_COLUMNS, filters=[("tx_datetime", "<", pd.Timestamp(as_of))]
    )
    known = arrived_chargebacks(source, rt.policy.learning.chargeback_delay_days, as_of, since=None)
    with open_session(rt.db_url) as s, s.begin():
        new = labels.add_transactions(s, tx)
        labels.add_labels(s, known.assign(actor="chargeback-feed").to_dict("records"))
    return new


@flow(name="train")
def train_flow(
    source: Path, as_of: datetime | None = None, window_days: int | None = None
) -> dict[str, Any]:
    """The first model (or a retrain from a fresh source); champion if none exists yet."""
    rt = runtime()
    as_of = as_of or datetime.now(UTC).replace(tzinfo=None)
    ingest_history(rt, source, as_of)
    return challenge(rt, as_of, window_days)
