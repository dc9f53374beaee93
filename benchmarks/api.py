"""Single-transaction latency of `POST /v1/score` over loopback, with a real uvicorn process.

The server runs in its own process (the client's threads must not share its GIL) against a
SQLite store holding the world's history and a registered champion; each request scores one
new transaction end to end: features, prediction, SHAP top-3, route, decision + audit stored.
"""

import json
import os
import socket
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
from benchmarks.common import TRUTH, champion, make_world, scratch_dir
from fraudloop import labels
from fraudloop.storage import migrate, open_session
from simulation.world import chargeback_labels

WARMUP = 20


def run(
    requests: int, concurrency: int, workers: int = 1, db_url: str | None = None
) -> dict[str, Any]:
    with scratch_dir() as tmp:
        home = Path(tmp)
        world = make_world()
        champion(world, home)
        tx = world.base
        cutoff = tx["tx_datetime"].iloc[len(tx) * 3 // 4]
        url = db_url or f"sqlite:///{home / 'store.db'}"
        _store(url, tx, cutoff)
        key = new_key()
        port = _free_port()
        env = {  # as `fraudloop serve` runs: the booster's own thread count, no OMP_NUM_THREADS
            **os.environ,
            "FRAUDLOOP_HOME": str(home),
            "FRAUDLOOP_DB_URL": url,
            "FRAUDLOOP_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "FRAUDLOOP_API_KEYS": json.dumps(
                [{"name": "bench", "role": "scorer", "sha256": hash_key(key)}]
            ),
        }
        command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        command += ["--workers", str(workers)]
        server = subprocess.Popen(command, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, server)
            later = tx[tx["tx_datetime"] >= cutoff].drop(columns=TRUTH)
            records = _payloads(later, WARMUP + requests)
            result = _load(base, key, records, concurrency, psutil.Process(server.pid))
            return {**result, "workers": workers, "db": url.split(":", 1)[0]}
        finally:
            server.terminate()
            server.wait(timeout=30)


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
            started = time.perf_counter()
            latencies = list(pool.map(one, records[WARMUP:]))
            wall = time.perf_counter() - started
            server_cpu = _cpu_seconds(server) - cpu_before
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
    }


def _cpu_seconds(server: psutil.Process) -> float:
    """User + system CPU of the server and its worker processes so far."""
    total = 0.0
    for process in (server, *server.children(recursive=True)):
        times = process.cpu_times()
        total += times.user + times.system
    return total


def _wait_ready(base: str, server: subprocess.Popen, timeout: float = 120) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited with code {server.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).json().get("mode") == "model":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"API at {base} not ready with a model after {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
