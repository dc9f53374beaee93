"""Train from a transaction source and its chargeback feed: load history and labels, then the
retrain path (the first model simply has no champion to beat)."""

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from flows.training import champion_metrics, fit, register_and_judge
from fraudloop import feed, labels
from fraudloop.storage import open_session


@task(cache_policy=NO_CACHE)
def ingest_history(rt: Runtime, source: Path, chargebacks: Path, as_of: datetime) -> int:
    """Transactions before `as_of` and the chargebacks known by then, into the store (idempotent)."""
    tx = feed.read_history(source, as_of)
    known = feed.read_labels(chargebacks, as_of)
    with open_session(rt.db_url) as s, s.begin():
        new = labels.add_transactions(s, tx)
        labels.add_labels(s, known.assign(actor=labels.CHARGEBACK_ACTOR).to_dict("records"))
    return new


@flow(name="train")
def train_flow(
    source: Path,
    chargebacks: Path,
    as_of: datetime | None = None,
    window_days: int | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """The first model (or a retrain from a fresh source); champion if none exists yet.
    `workers`: Dask workers for the fit (default `FRAUDLOOP_DASK_WORKERS`; `flows.training`)."""
    rt = runtime()
    as_of = as_of or rt.clock()
    window_days = window_days or rt.policy.learning.train_window_days
    ingest_history(rt, source, chargebacks, as_of)
    challenger = fit(rt, as_of, window_days, workers)
    return register_and_judge(rt, challenger, champion_metrics(rt, challenger), as_of, window_days)
