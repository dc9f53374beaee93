"""The scoring flow over 1, 2, … Dask workers on the same window, side by side in one run.

Each worker count scores the same `rows` transactions (the simulated world replayed epoch after
epoch, fresh ids: `benchmarks.common.workload`) from one parquet file into a fresh store, through
`flows.score.score_flow` as `fraudloop score` runs it: read the window, plan the partitions
(`flows.partitions`), score them on a local cluster of that many single-threaded worker processes,
store. What is set up untimed: the world, the champion in a scratch registry, the file, the
cluster, and a first run of the flow the same way over the day before the window (Prefect's
temporary server starts, each worker imports the flow and loads the model: what a cluster
serving many runs has done long before). 0 in `workers` is the flow in one process, for
reference.
"""

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from benchmarks.common import TRUTH, World, champion, make_world, scratch_dir
from fraudloop.settings import get_settings
from fraudloop.storage import Decision, engine_for, open_session

DEAD_URL = "http://127.0.0.1:9"  # no Label Studio: review work stays in the outbox, untimed


def run(rows: int, workers: list[int], db_url: str | None, chunk: int) -> dict[str, Any]:
    from distributed import LocalCluster

    from flows.score import score_flow

    with scratch_dir() as tmp:
        home = Path(tmp)
        world = make_world()
        model = champion(world, home)
        tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
        source, start, end = _window_file(world, rows, home / "window.parquet")
        before = start - timedelta(days=1)  # the warm-up run's day
        results = []
        for n in workers:
            with _store(db_url, home, n) as url:
                _configure(home, url, tracking_uri, chunk)
                cluster = (
                    LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None)
                    if n
                    else None
                )
                try:
                    if cluster is not None:
                        os.environ["FRAUDLOOP_DASK_ADDRESS"] = cluster.scheduler_address
                        get_settings.cache_clear()
                    warm = score_flow(source, before, start, workers=n)["new_decisions"]
                    started = time.perf_counter()
                    done = score_flow(source, start, end, workers=n)
                    seconds = time.perf_counter() - started
                finally:
                    if cluster is not None:
                        cluster.close()
                    os.environ.pop("FRAUDLOOP_DASK_ADDRESS", None)
                stored = _decisions(url) - warm
            if done["new_decisions"] != rows or stored != rows:
                raise RuntimeError(f"{n} worker(s): expected {rows} decisions, stored {stored}")
            results.append({"workers": n, "seconds": round(seconds, 2)})
    base = results[0]["seconds"]
    for r in results:
        r["rows_per_s"] = round(rows / r["seconds"], 1)
        r[f"speedup_vs_{workers[0]}"] = round(base / r["seconds"], 3)
    return {
        "rows": rows,
        "db": (db_url or "sqlite").split(":", 1)[0],
        "chunk": chunk,
        "runs": results,
        "model": f"{model.name} v{model.version}",
    }


def _window_file(world: World, rows: int, path: Path) -> tuple[Path, datetime, datetime]:
    """`rows` transactions in time order as one parquet file, after the world's last day (the
    warm-up's), and the window holding the `rows`."""
    base = world.base.drop(columns=TRUTH)
    run_id = uuid.uuid4().hex[:8]
    epochs = [base[base["tx_datetime"] >= base["tx_datetime"].max() - timedelta(days=1)]]
    epochs[0] = epochs[0].assign(
        transaction_id="warmup-" + epochs[0]["transaction_id"],
        tx_datetime=epochs[0]["tx_datetime"] - timedelta(days=world.days),
    )
    for epoch in range(-(-rows // len(base))):
        epochs.append(
            base.assign(
                transaction_id=f"{run_id}e{epoch}-" + base["transaction_id"],
                tx_datetime=base["tx_datetime"] + timedelta(days=world.days * epoch),
            )
        )
    warmup = len(epochs[0])
    frame = pd.concat(epochs, ignore_index=True).head(warmup + rows)
    frame.to_parquet(path, index=False)
    start = frame["tx_datetime"].iloc[warmup].to_pydatetime()
    return path, start, frame["tx_datetime"].max().to_pydatetime() + timedelta(seconds=1)


def _configure(home: Path, url: str, tracking_uri: str, chunk: int) -> None:
    os.environ.update(
        {
            "FRAUDLOOP_HOME": str(home / "state"),
            "FRAUDLOOP_DB_URL": url,
            "FRAUDLOOP_MLFLOW_TRACKING_URI": tracking_uri,
            "FRAUDLOOP_LABELSTUDIO_URL": DEAD_URL,
            "FRAUDLOOP_SCORE_CHUNK_ROWS": str(chunk),
        }
    )
    get_settings.cache_clear()


@contextmanager
def _store(db_url: str | None, home: Path, workers: int) -> Iterator[str]:
    """A fresh store per run: a SQLite file, or a new PostgreSQL database made from `db_url`'s
    connection and named after it (dropped afterwards)."""
    if db_url is None or db_url.startswith("sqlite"):
        yield f"sqlite:///{home / f'store_w{workers}.db'}"
        return
    url = make_url(db_url)
    name = f"{url.database}_w{workers}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    fresh = url.set(database=name).render_as_string(hide_password=False)
    try:
        yield fresh
    finally:
        engine_for(fresh).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _decisions(url: str) -> int:
    with open_session(url) as session:
        return int(session.scalar(select(func.count()).select_from(Decision)) or 0)
