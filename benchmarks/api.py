"""Single-transaction latency of `POST /v1/score` over loopback, with a real server process.

The server runs as `fraudloop serve --workers N` runs it, in its own processes (the client's
threads must not share its GIL), against a store holding the world's history and a registered
champion; each request scores one new transaction end to end: features, prediction, SHAP top-3,
route, decision + audit stored. Several worker counts run one after another in one call, each
against a fresh SQLite store (a PostgreSQL store given is shared: every run's ids are its own).
"""

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from api.auth import hash_key, new_key
from benchmarks.common import TRUTH, champion, free_port, make_world, scratch_dir
from fraudloop import credentials, labels
from fraudloop.storage import migrate, open_session
from simulation.world import chargeback_labels

WARMUP = 20


def run(
    requests: int, concurrency: int, workers: list[int], db_url: str | None = None
) -> dict[str, Any]:
    """Each worker count in turn, same world, champion and load; throughput against the first."""
    with scratch_dir() as tmp:
        home = Path(tmp)
        world = make_world()
        champion(world, home)
        credentials.ensure(home)  # `serve` refuses to start without this install's secrets
        runs = [
            _serve_and_load(home, world.base, n, requests, concurrency, db_url) for n in workers
        ]
    first = runs[0]["rps"]
    for r in runs:
        r[f"throughput_vs_{workers[0]}_workers"] = round(r["rps"] / first, 3)
    return {"concurrency": concurrency, "requests": requests, "runs": runs}


def _serve_and_load(
    home: Path, tx: Any, workers: int, requests: int, concurrency: int, db_url: str | None
) -> dict[str, Any]:
    cutoff = tx["tx_datetime"].iloc[len(tx) * 3 // 4]
    url = db_url or f"sqlite:///{home / f'store_w{workers}.db'}"
    _store(url, tx, cutoff)
    key = new_key()
    port = free_port()
    env = {  # as `fraudloop serve` runs: the booster's own thread count, no OMP_NUM_THREADS
        **os.environ,
        "FRAUDLOOP_HOME": str(home),
        "FRAUDLOOP_DB_URL": url,
        "FRAUDLOOP_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "FRAUDLOOP_API_KEYS": json.dumps(
            [{"name": "bench", "role": "scorer", "sha256": hash_key(key)}]
        ),
    }
    command = [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(command, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, server, workers)
        later = tx[tx["tx_datetime"] >= cutoff].drop(columns=TRUTH)
        records = _payloads(later, WARMUP + requests)
        result = _load(base, key, records, concurrency, psutil.Process(server.pid))
        return {**result, "workers": workers, "db": url.split(":", 1)[0]}
    finally:
        server.terminate()
        server.wait(timeout=60)


def _store(url: str, tx: Any, cutoff: datetime) -> None:
    """History before the cutoff and the chargebacks known by then, as a live store has."""
    migrate(url)
    known = chargeback_labels(tx, 7)
    with open_session(url) as session, session.begin():
        labels.add_transactions(session, tx[tx["tx_datetime"] < cutoff])
        labels.add_labels(session, known[known["known_at"] < cutoff].to_dict("records"))


def _payloads(later: Any, n: int) -> list[dict[str, Any]]:
    run_id = uuid.uuid4().hex[:8]
    rows = later.iloc[np.arange(n) % len(later)].to_dict("records")
    return [
        {**r, "transaction_id": f"{run_id}-{i}", "tx_datetime": r["tx_datetime"].isoformat()}
        for i, r in enumerate(rows)
    ]


def _load(
    base: str, key: str, records: list[dict[str, Any]], concurrency: int, server: psutil.Process
) -> dict[str, Any]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, limits=limits) as client:

        def one(record: dict[str, Any]) -> float:
            started = time.perf_counter()
            response = client.post("/v1/score", json=record)
            elapsed = time.perf_counter() - started
            if response.status_code != 200 or response.json()["replayed"]:  # noqa: PLR2004 - HTTP OK
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
            return elapsed

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, records[:WARMUP]))
            cpu_before = _cpu_seconds(server)
            per_worker = _worker_cpu(server)
            started = time.perf_counter()
            latencies = list(pool.map(one, records[WARMUP:]))
            wall = time.perf_counter() - started
            server_cpu = _cpu_seconds(server) - cpu_before
            spent = {
                pid: cpu - per_worker.get(pid, 0.0) for pid, cpu in _worker_cpu(server).items()
            }
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "concurrency": concurrency,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "rps": round(len(latencies) / wall, 1),
        # what the server spent a request, whatever the machine's load: the latencies' floor
        "server_cpu_ms_per_request": round(server_cpu * 1000 / len(latencies), 2),
        # each worker's share of the workers' CPU: do they share the load?
        "worker_cpu_shares": sorted(
            (round(c / max(sum(spent.values()), 1e-9), 3) for c in spent.values()), reverse=True
        ),
    }


def _worker_cpu(server: psutil.Process) -> dict[int, float]:
    """User + system CPU so far of each worker process (the server itself, alone)."""
    workers = server.children() or [server]
    return {p.pid: p.cpu_times().user + p.cpu_times().system for p in workers}


def _cpu_seconds(server: psutil.Process) -> float:
    """User + system CPU of the server and its worker processes so far."""
    total = 0.0
    for process in (server, *server.children(recursive=True)):
        times = process.cpu_times()
        total += times.user + times.system
    return total


def _wait_ready(base: str, server: subprocess.Popen, workers: int, timeout: float = 300) -> None:  # type: ignore[type-arg]
    """Until every worker answers with its model (fresh connections reach each of them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"`fraudloop serve` exited with code {server.returncode}")
        if len(_ready_workers(base)) >= workers:
            return
        time.sleep(0.5)
    raise RuntimeError(f"API at {base} not ready with a model after {timeout:.0f} s")


def _ready_workers(base: str) -> set[int]:
    ready = set()
    for _ in range(8):
        try:
            with httpx.Client(base_url=base, timeout=2) as fresh:
                pid = fresh.get("/healthz").json()["worker"]
                if fresh.get("/readyz").json().get("mode") == "model":
                    ready.add(pid)
        except (httpx.HTTPError, ValueError, KeyError):
            continue
    return ready
