"""Scoring over Dask: a window partitioned by customer over the two workers of a real local
cluster stores exactly the decisions one process stores, on SQLite and on PostgreSQL.

Two stores start from the same history and champion; one scores the window in one process, the
other over Dask. The window is longer than the label delay, so it is cut into two slices
(`flows.partitions`), each scored in chunks.
"""

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from sqlalchemy import create_engine, func, select, text

from flows.runtime import runtime
from flows.score import score_flow
from flows.train import ingest_history, train_flow
from fraudloop import audit
from fraudloop.feed import read_window
from fraudloop.settings import get_settings
from fraudloop.storage import AuditEvent, Decision, open_session, read_frame
from simulation.world import SimulationConfig, simulate, write_world

pytestmark = pytest.mark.integration
DEAD_URL = "http://127.0.0.1:9"  # Label Studio down: review work stays in the outbox
WINDOW_DAYS = 9  # longer than the policy's 7-day label delay: two slices
CHUNK = 500  # several chunks per partition and slice
CHAIN_COLUMNS = ("seq", "prev_hash", "hash")  # where an event sits in the chain, not what it says
_POSTGRES = pytest.param("postgresql", marks=[pytest.mark.postgres])
PG_ADMIN_URL = os.environ.get(  # as tests/conftest.py's `pg_url`, for two databases in one test
    "FRAUDLOOP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as made:
        yield made


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, datetime]:
    """A simulated month of history, then the window to score."""
    cfg = SimulationConfig(n_customers=250, n_terminals=500, days=30 + WINDOW_DAYS, seed=11)
    files = write_world(simulate(cfg), tmp_path_factory.mktemp("world"), delay_days=7)
    return files.transactions, files.chargebacks, cfg.start + timedelta(days=30)


@pytest.fixture(params=["sqlite", _POSTGRES])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two fresh stores (one process's, Dask's) on the same kind of database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'dask.db'}"
        return
    names = [f"fraudloop_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def _use(monkeypatch: pytest.MonkeyPatch, home: Path, db_url: str, **env: str) -> None:
    monkeypatch.setenv("FRAUDLOOP_HOME", str(home))
    monkeypatch.setenv("FRAUDLOOP_DB_URL", db_url)
    for key, value in env.items():
        monkeypatch.setenv(f"FRAUDLOOP_{key.upper()}", value)
    get_settings.cache_clear()


def _decisions(db_url: str) -> pd.DataFrame:
    with open_session(db_url) as s:
        frame = read_frame(s, select(Decision))
    return frame.sort_values("transaction_id").reset_index(drop=True)


def _events(db_url: str) -> pd.DataFrame:
    """Each transaction's decision events as their content (the chain's hashes and order are
    the store's: the two runs appended in different orders)."""
    stmt = select(AuditEvent).where(AuditEvent.event_type.in_(audit.DECISION_EVENTS))
    with open_session(db_url) as s:
        frame = read_frame(s, stmt).drop(columns=list(CHAIN_COLUMNS))
    return frame.sort_values("transaction_id").reset_index(drop=True)


def test_dask_scoring_stores_what_one_process_stores(
    cluster: LocalCluster,
    world: tuple[Path, Path, datetime],
    stores: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, chargebacks, live = world
    one_url, dask_url = stores
    end = live + timedelta(days=WINDOW_DAYS)
    env = {
        "labelstudio_url": DEAD_URL,
        "score_chunk_rows": str(CHUNK),
        "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "dask_address": cluster.scheduler_address,
    }
    _use(monkeypatch, tmp_path / "one", one_url, **env)
    trained = train_flow(source, chargebacks, live)
    assert trained["promoted"]
    one = score_flow(source, live, end, workers=0)

    _use(monkeypatch, tmp_path / "dask", dask_url, **env)
    ingest_history.fn(runtime(), source, chargebacks, live)  # the same history, no training
    with Client(cluster.scheduler_address) as client, get_task_stream(client) as stream:
        spread = score_flow(source, live, end, workers=2)
    assert {t["worker"] for t in stream.data} == set(cluster.scheduler_info["workers"])

    expected = len(read_window(source, live, end))
    assert one["scored"] == spread["scored"] == one["new_decisions"] == expected > 0
    assert spread["new_decisions"] == expected and not spread["fallback"]
    pd.testing.assert_frame_equal(_decisions(dask_url), _decisions(one_url))
    pd.testing.assert_frame_equal(_events(dask_url), _events(one_url))
    with open_session(dask_url) as s:
        per_tx = s.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.event_type.in_(audit.DECISION_EVENTS))
            .group_by(AuditEvent.transaction_id)
        ).scalars()
        assert set(per_tx) == {1}  # one decision event per transaction, none twice
        verified = audit.verify(s)
    assert verified.ok, verified.message()
    assert verified.n_decisions == expected
