"""Retrain on reviewer labels plus the chargebacks that have arrived; promote only a winner."""

from datetime import datetime
from typing import Any

from prefect import flow

from flows.runtime import runtime
from flows.training import champion_metrics, fit, register_and_judge


@flow(name="retrain")
def retrain_flow(
    as_of: datetime | None = None, window_days: int | None = None, workers: int | None = None
) -> dict[str, Any]:
    """Triggered by data scientists or on a schedule; returns what happened to the registry.
    `workers`: Dask workers for the fit (default `FRAUDLOOP_DASK_WORKERS`; `flows.training`)."""
    rt = runtime()
    as_of = as_of or rt.clock()
    window_days = window_days or rt.policy.learning.train_window_days
    challenger = fit(rt, as_of, window_days, workers)
    return register_and_judge(rt, challenger, champion_metrics(rt, challenger), as_of, window_days)
