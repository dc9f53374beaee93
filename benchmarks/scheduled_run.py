"""Benchmark (not a test): what a scheduled scoring run costs over the scoring itself.

The same work, one landing file of `rows` transactions scored with the champion and its
reviews handed to Label Studio, done two ways in turn: (a) the score-intake flow called in
this process, its imports warm; (b) the `score-intake` deployment triggered on a real Prefect
server, served as `fraudloop up` serves it (`flows.server.start_scheduler`), and waited for:
the runner's pick-up, a new process and its imports, the champion loaded again. Each run
scores a file of its own (the next transactions in time), so none re-reads another's; one
untimed run of each way goes first. Everything lives in a scratch install built untimed: a
simulated world, its history in the store, a champion in MLflow, a Prefect server on a free
port; only the Label Studio is shared (queues of its own, deleted afterwards).
"""

import gc
import math
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmarks.common import NAME, TRUTH, World, champion, free_port, make_world
from flows import server
from flows.intake import score_intake_flow
from fraudloop import labels
from fraudloop.errors import FraudloopError
from fraudloop.policy import load_policy
from fraudloop.settings import Settings, get_settings
from fraudloop.storage import IntakeFile, make_engine, migrate
from labeling.client import connect
from labeling.projects import delete_projects
from simulation.world import chargeback_labels

HISTORY_DAYS = 14  # simulated days in the store before the scored ones: the features' past
SCORE_INTAKE = "score-intake"
# settings a scratch install must not take from this environment: another install's
# services, or a Dask cluster the benchmark did not ask for
NOT_INHERITED = (
    "FRAUDLOOP_WEBHOOK_URL",
    "FRAUDLOOP_PREFECT_DATABASE_URL",
    "FRAUDLOOP_DASK_ADDRESS",
)


def run(rows: int, repeats: int, labelstudio: tuple[str, str], customers: int) -> dict[str, Any]:
    """`repeats` pairs of (a) in-process and (b) triggered runs, a then b, after one untimed pair."""
    tag = uuid.uuid4().hex[:6]
    with (
        tempfile.TemporaryDirectory(prefix="fraudloop-bench-") as scratch,
        scratch_install(Path(scratch).resolve(), labelstudio, f"bench-run-{tag}") as settings,
    ):
        t0 = time.perf_counter()
        files = _workload(settings, customers, rows, 2 * (repeats + 1))
        try:
            up = server.start_scheduler(settings, schedules=False)
            setup = time.perf_counter() - t0
            a, b = _alternate(settings, files, repeats)
        finally:
            server.stop(settings)
            delete_projects(connect(*labelstudio), settings.labelstudio_project_prefix)
            # what the in-process runs froze (`tune_for_scoring`), freed while xgboost is loaded
            gc.unfreeze()
            gc.collect()
    overhead = [tb["seconds"] - ta for ta, tb in zip(a, b, strict=True)]
    return {
        "rows": rows,
        "repeats": repeats,
        "runner_poll_seconds": float(
            os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY", server.RUNNER_POLL_SECONDS)
        ),
        "deployments_served": len(up.deployments),
        "prefect_api_url": settings.prefect_api_url,  # the scratch server's, stopped by now
        "in_process_seconds": [round(t, 2) for t in a],
        "triggered_seconds": [round(t["seconds"], 2) for t in b],
        "in_process_median_s": round(statistics.median(a), 2),
        "triggered_median_s": round(statistics.median(t["seconds"] for t in b), 2),
        "overhead_median_s": round(statistics.median(overhead), 2),
        "triggered_until_running_median_s": round(
            statistics.median(t["until_running"] for t in b), 2
        ),
        "triggered_running_median_s": round(statistics.median(t["running"] for t in b), 2),
        "untimed_setup_seconds": round(setup, 1),
    }


@contextmanager
def scratch_install(home: Path, labelstudio: tuple[str, str], prefix: str) -> Iterator[Settings]:
    """The settings, and the environment the runner and its runs inherit, of a throwaway
    install in `home`: its own store, registry, landing folders and Prefect server."""
    url, token = labelstudio
    values = {
        "FRAUDLOOP_HOME": str(home),
        "FRAUDLOOP_DB_URL": f"sqlite:///{home / 'fraudloop.db'}",
        "FRAUDLOOP_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",  # `champion`'s
        "FRAUDLOOP_MODEL_NAME": NAME,
        "FRAUDLOOP_LANDING_TRANSACTIONS": str(home / "landing" / "transactions"),
        "FRAUDLOOP_LANDING_CHARGEBACKS": str(home / "landing" / "chargebacks"),
        "FRAUDLOOP_PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "FRAUDLOOP_LABELSTUDIO_URL": url,
        "FRAUDLOOP_LABELSTUDIO_TOKEN": token,
        "FRAUDLOOP_LABELSTUDIO_PROJECT_PREFIX": prefix,
    }
    saved = {name: os.environ.get(name) for name in [*values, *NOT_INHERITED]}
    os.environ.update(values)
    for name in NOT_INHERITED:
        os.environ.pop(name, None)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def _workload(settings: Settings, customers: int, rows: int, n_files: int) -> list[pd.DataFrame]:
    """A world whose first days are in the store (with the chargebacks known by their end) and
    a champion trained on them; the transactions after them cut into `n_files` of `rows`."""
    live_days = math.ceil(rows * n_files / customers) + 1  # each buys about twice a day: ample
    world = make_world(customers, HISTORY_DAYS + live_days)
    live_start = world.base["tx_datetime"].min().normalize() + timedelta(days=HISTORY_DAYS)
    past = world.base[world.base["tx_datetime"] < live_start]
    live = world.base[world.base["tx_datetime"] >= live_start].drop(columns=TRUTH)
    if len(live) < rows * n_files:
        raise FraudloopError(
            f"--rows {rows}: the simulated world has {len(live):,} transactions to score, "
            f"{rows * n_files:,} are needed; raise --customers"
        )
    migrate(settings.database_url)
    known = chargeback_labels(
        past, load_policy(settings.policy_file).learning.chargeback_delay_days
    )
    known = known[known["known_at"] < live_start]
    with Session(make_engine(settings.database_url)) as s, s.begin():
        labels.add_transactions(s, past)
        labels.add_labels(s, known.assign(actor=labels.CHARGEBACK_ACTOR).to_dict("records"))
    champion(World(past.reset_index(drop=True), HISTORY_DAYS), settings.home)
    return [live.iloc[i * rows : (i + 1) * rows] for i in range(n_files)]


def _alternate(
    settings: Settings, files: list[pd.DataFrame], repeats: int
) -> tuple[list[float], list[dict[str, float]]]:
    """(a) then (b), file after file; the first pair untimed."""
    api = settings.prefect_api_url
    a: list[float] = []
    b: list[dict[str, float]] = []
    for i in range(repeats + 1):
        in_process = _in_process(settings, files[2 * i], f"a{i}")
        triggered = _triggered(settings, files[2 * i + 1], f"b{i}", api)
        if i:
            a.append(in_process)
            b.append(triggered)
    return a, b


def _in_process(settings: Settings, frame: pd.DataFrame, name: str) -> float:
    now = _drop(settings, frame, name)
    t0 = time.perf_counter()
    with server.reporting_to(settings.prefect_api_url):
        score_intake_flow(now=now)
    seconds = time.perf_counter() - t0
    _check_scored(settings, name, len(frame))
    return seconds


def _triggered(settings: Settings, frame: pd.DataFrame, name: str, api: str) -> dict[str, float]:
    """Trigger to end as the server stamped them (no waiting caller's polling in it), and
    split where the run began: before, the pick-up and a new process loading the flow."""
    now = _drop(settings, frame, name)
    flow_run = server.trigger(api, SCORE_INTAKE, None, {"now": now})
    if not (flow_run.state and flow_run.state.is_completed()):
        raise FraudloopError(f"the {SCORE_INTAKE} run {flow_run.name} ended {flow_run.state}")
    _check_scored(settings, name, len(frame))
    created, started, ended = flow_run.created, flow_run.start_time, flow_run.end_time
    if created is None or started is None or ended is None:
        raise FraudloopError(f"the {SCORE_INTAKE} run {flow_run.name} has no start or end time")
    return {
        "seconds": (ended - created).total_seconds(),
        "until_running": (started - created).total_seconds(),
        "running": (ended - started).total_seconds(),
    }


def _drop(settings: Settings, frame: pd.DataFrame, name: str) -> Any:
    """The file in the landing folder, settled (stamped a minute ago); the run's `now` just
    after its last transaction."""
    folder = settings.transactions_landing
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{name}.parquet.part"
    frame.to_parquet(part, index=False)
    settled = time.time() - 60
    os.utime(part, (settled, settled))
    part.rename(folder / f"{name}.parquet")
    return (frame["tx_datetime"].max() + timedelta(seconds=1)).to_pydatetime()


def _check_scored(settings: Settings, name: str, rows: int) -> None:
    with Session(make_engine(settings.database_url)) as s:
        done = s.scalars(select(IntakeFile).where(IntakeFile.name == f"{name}.parquet")).one()
    if (done.status, done.rows_done) != ("done", rows):
        raise FraudloopError(f"{name}.parquet: {done.status}, {done.rows_done} of {rows} rows")
