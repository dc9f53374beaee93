"""`fraudloop serve --workers 2` as a real server on PostgreSQL: one client's keep-alive
connections reach both workers, and a champion moved in the registry is picked up by each worker
while requests keep being answered by a model."""

import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
import pytest
from waiting import free_port, until

from api.auth import hash_key
from fraudloop import credentials, labels
from fraudloop.storage import migrate, open_session
from models import registry
from models.train import TrainParams, train_model
from models.training_set import build_training_frame
from simulation.world import SimulationConfig, chargeback_labels, simulate

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
NAME = "fraud-detector"
CUTOFF = datetime(2018, 4, 15)
KEY = "test-key-for-the-scorer-0123456789abcdef"
CONNECTIONS = 16  # keep-alive connections of one client, as `bench api --concurrency 16`


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    return simulate(SimulationConfig(n_customers=200, n_terminals=400, days=20))


@pytest.fixture(scope="module")
def versions(world: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """A registry with two versions (different trees); `champion` is the first."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    frame = build_training_frame(world, chargeback_labels(world, 7), CUTOFF, 14)
    made = []
    for trees in (10, 20):
        model = train_model(frame.X, frame.y, TrainParams(n_estimators=trees))
        made.append(
            registry.log_and_register(
                model, frame.X, {}, {"n_estimators": trees}, {"end": "2018-04-15"}, uri, NAME
            )
        )
    registry.set_alias(NAME, registry.CHAMPION, made[0], tracking_uri=uri)
    return uri, made[1]


@pytest.fixture
def served(
    pg_url: str, world: pd.DataFrame, versions: tuple[str, int], tmp_path: Path
) -> Iterator[tuple[str, psutil.Process]]:
    """`fraudloop serve --workers 2` on a free port; its base URL and its arbiter process."""
    migrate(pg_url)
    with open_session(pg_url) as session, session.begin():
        labels.add_transactions(session, world[world["tx_datetime"] < CUTOFF])
    credentials.ensure(tmp_path)
    port = free_port()
    env = {
        "FRAUDLOOP_HOME": str(tmp_path),
        "FRAUDLOOP_DB_URL": pg_url,
        "FRAUDLOOP_MLFLOW_TRACKING_URI": versions[0],
        "FRAUDLOOP_MODEL_REFRESH_SECONDS": "2",
        "FRAUDLOOP_API_KEYS": json.dumps(
            [{"name": "t", "role": "scorer", "sha256": hash_key(KEY)}]
        ),
    }
    command = [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(port)]
    proc = subprocess.Popen(command, env={**_environ(), **env})
    base = f"http://127.0.0.1:{port}"
    try:
        until("both workers answer with the model", lambda: len(_models(base)) == 2, 300)  # noqa: PLR2004
        yield base, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _models(base: str) -> dict[int, int]:
    """{worker pid: model version} of the workers fresh connections reach (model mode only)."""
    found: dict[int, int] = {}
    for _ in range(CONNECTIONS):
        try:
            with httpx.Client(base_url=base, timeout=10) as fresh:
                pid = fresh.get("/healthz").json()["worker"]
                ready = fresh.get("/readyz").json()
        except (httpx.HTTPError, ValueError):
            return {}
        if ready.get("mode") == "model":
            found[pid] = ready["model"]["version"]
    return found


def _payloads(world: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    later = world[world["tx_datetime"] >= CUTOFF].drop(columns=["is_fraud", "fraud_scenario"])
    rows = later.head(n).to_dict("records")
    run = uuid.uuid4().hex[:8]
    return [
        {**r, "transaction_id": f"{run}-{i}", "tx_datetime": r["tx_datetime"].isoformat()}
        for i, r in enumerate(rows)
    ]


def test_one_clients_keep_alive_connections_reach_both_workers(
    served: tuple[str, psutil.Process],
) -> None:
    base, arbiter = served
    workers = {p.pid for p in arbiter.children()}
    assert len(workers) == 2  # noqa: PLR2004
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    with httpx.Client(base_url=base, limits=limits, timeout=30) as client:

        def pid(_: int) -> int:
            return int(client.get("/healthz").json()["worker"])

        with ThreadPoolExecutor(CONNECTIONS) as pool:
            answered = list(pool.map(pid, range(CONNECTIONS * 20)))
    assert set(answered) == workers


def test_a_moved_champion_reaches_every_worker_and_no_request_goes_without_a_model(
    served: tuple[str, psutil.Process], world: pd.DataFrame, versions: tuple[str, int]
) -> None:
    base, _ = served
    uri, second = versions
    records = _payloads(world, 700)
    spare = iter(records[300:600])  # new payments while waiting: a worker checks on a request
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    with httpx.Client(base_url=base, limits=limits, timeout=60, headers={"X-API-Key": KEY}) as c:

        def score(record: dict[str, Any]) -> tuple[int, str | None, bool]:
            answer = c.post("/v1/score", json=record)
            body = answer.json()
            return answer.status_code, body.get("model_version"), body.get("fallback", True)

        with ThreadPoolExecutor(8) as pool:
            before = list(pool.map(score, records[:100]))
            registry.set_alias(NAME, registry.CHAMPION, second, tracking_uri=uri)
            during = list(pool.map(score, records[100:300]))
            waiting: list[tuple[int, str | None, bool]] = []

            def moved() -> bool:
                # a worker looks at the registry when a request comes after its interval (no
                # request, no check), so requests keep coming until both serve the new version
                waiting.extend(pool.map(score, itertools.islice(spare, CONNECTIONS)))
                return set(_models(base).values()) == {second}

            until("every worker serves the new champion", moved, 300)
            after = list(pool.map(score, records[600:]))
    answers = before + during + waiting + after
    assert {status for status, _, _ in answers} == {200}
    assert not any(fallback for _, _, fallback in answers)  # a model in hand throughout
    assert {version for _, version, _ in before} == {"1"}
    assert {version for _, version, _ in after} == {str(second)}
