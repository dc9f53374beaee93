"""The server profile on real servers: PostgreSQL (a database per service, made for this module
under its own prefix), an MLflow tracking server on it, a Prefect server on it with a process
work pool and a worker. Training, registration, promotion and scoring go through the tracking
server; a worker killed in the middle of a scoring run, its run is run again and every
transaction ends with one decision and its audit events. Label Studio starts on its database in
a test of its own (elsewhere it is down: reviews wait in the outbox)."""

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from waiting import free_port, until

from cli.doctor import mlflow_server, prefect_database, server_databases, work_pool
from flows import profile, server
from flows.score import score_flow
from flows.train import train_flow
from fraudloop import audit, credentials
from fraudloop.feed import read_window
from fraudloop.policy import load_policy
from fraudloop.settings import Settings, get_settings
from fraudloop.storage import AuditEvent, Decision, migrate, open_session
from models.registry import champion_version
from simulation.world import SimulationConfig, simulate, write_world

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]
SLOW_CHUNK = 10  # rows per stored chunk: a run long enough to be killed halfway


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, datetime]:
    cfg = SimulationConfig(n_customers=200, n_terminals=400, days=32, seed=5)
    files = write_world(simulate(cfg), tmp_path_factory.mktemp("world"), delay_days=7)
    return files.transactions, files.chargebacks, cfg.start + timedelta(days=30)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The profile's settings (its own database prefix, free ports), its databases made; every
    server it started stopped and every database dropped at the end."""
    home = tmp_path_factory.mktemp("home")
    credentials.ensure(home)  # Label Studio's token and password, as `fraudloop up` makes them
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "FRAUDLOOP_PROFILE": "server",
            "FRAUDLOOP_HOME": str(home),
            "FRAUDLOOP_SERVER_DATABASE_PREFIX": f"fl_{uuid.uuid4().hex[:8]}",
            "FRAUDLOOP_MLFLOW_SERVER_URL": f"http://127.0.0.1:{free_port()}",
            "FRAUDLOOP_PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
            "FRAUDLOOP_LABELSTUDIO_URL": f"http://127.0.0.1:{free_port()}",  # down
            "FRAUDLOOP_PREFECT_WORK_POOL": f"pool-{uuid.uuid4().hex[:6]}",
        }.items():
            env.setenv(key, value)
        get_settings.cache_clear()
        made = get_settings()
        assert sorted(profile.ensure_databases(made)) == sorted(
            f"{made.server_database_prefix}_{s}" for s in profile.SERVICES
        )
        assert profile.ensure_databases(made) == []  # there now: nothing made twice
        migrate(made.database_url)  # the tests read the store before any run has made it
        try:
            yield made
        finally:
            profile.stop(made)
            server.server_service(made).stop()
            get_settings.cache_clear()
            _drop_databases(made)


def _drop_databases(settings: Settings) -> None:
    admin = create_engine(
        make_url(settings.server_database("store")).set(database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        for service in profile.SERVICES:
            name = make_url(settings.server_database(service)).database
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_train_register_promote_and_score_through_the_tracking_server(
    settings: Settings, world: tuple[Path, Path, datetime]
) -> None:
    source, chargebacks, live = world
    assert profile.start_mlflow(settings) is not None  # ours, on its database
    assert settings.tracking_uri == settings.mlflow_server_url
    assert settings.database_url == settings.server_database("store")

    trained = train_flow(source, chargebacks, live)
    assert trained["promoted"]
    version = champion_version(settings.model_name, tracking_uri=settings.tracking_uri)
    assert version == trained["version"]
    scored = score_flow(source, live, live + timedelta(hours=12))
    assert scored["scored"] == len(read_window(source, live, live + timedelta(hours=12))) > 0
    assert not scored["fallback"]
    with open_session(settings.database_url) as s:
        versions = set(s.scalars(select(Decision.model_version)))
    assert versions == {str(version)}
    assert list(settings.mlflow_artifacts.rglob("MLmodel")), "artifacts under the state dir"
    assert "model version(s)" in mlflow_server(settings)
    assert "fl_" in server_databases(settings)


def _score_batch_runs(settings: Settings, since: datetime) -> list[Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )

    with server.client(settings.prefect_api_url) as c:
        return list(
            c.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=[profile.SCORE_BATCH])
                ),
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
            )
        )


def _decided(settings: Settings) -> int:
    with open_session(settings.database_url) as s:
        return int(s.scalar(select(func.count()).select_from(Decision)) or 0)


def test_a_worker_killed_mid_run_the_run_is_run_again_and_nothing_decided_twice(
    settings: Settings, world: tuple[Path, Path, datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _, live = world
    start, end = live - timedelta(days=27), live - timedelta(days=1)  # before the first test's
    expected = len(read_window(source, start, end))
    before = _decided(settings)
    monkeypatch.setenv("FRAUDLOOP_SCORE_CHUNK_ROWS", str(SLOW_CHUNK))  # for the worker's runs
    assert server.start_server(settings) is not None
    names = profile.deploy(settings, load_policy(settings.policy_file))
    assert f"score-batch/{profile.SCORE_BATCH}" in names
    (first_worker,) = profile.start_workers(settings)
    assert "every deployment on it" in work_pool(settings)
    assert "deployment(s)" in prefect_database(settings)

    since = datetime.now(UTC)
    with server.client(settings.prefect_api_url) as c:
        deployment = c.read_deployment_by_name(f"score-batch/{profile.SCORE_BATCH}")
        c.create_flow_run_from_deployment(
            deployment.id,
            parameters={"source": str(source), "start": start.isoformat(), "end": end.isoformat()},
        )
    until("the run stores its first chunks", lambda: _decided(settings) > before, 300, 0.2)
    time.sleep(3)  # its first heartbeat (sent as it starts) has reached the server
    assert _decided(settings) - before < expected, "not killed halfway"
    machine = psutil.Process(first_worker)
    lost = [machine, *machine.children(recursive=True)]
    for process in lost:  # the machine is gone: the worker and the run it started
        process.kill()
    psutil.wait_procs(lost, timeout=30)
    killed_at = _decided(settings) - before

    profile.start_workers(settings)  # another machine takes the pool over

    def rerun_completed() -> bool:
        runs = _score_batch_runs(settings, since)
        states = [r.state.type.value for r in runs if r.state]
        return "CRASHED" in states and "COMPLETED" in states

    until("the crashed run is run again to completion", rerun_completed, 600, every=5)
    reruns = [r.parameters.get("reruns", 0) for r in _score_batch_runs(settings, since)]
    assert sorted(reruns) == [0, 1]  # the automation counted its rerun (the crash-loop guard)
    assert killed_at < expected
    assert _decided(settings) - before == expected
    with open_session(settings.database_url) as s:
        per_tx = s.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.event_type.in_(audit.DECISION_EVENTS))
            .where(AuditEvent.timestamp == end)  # this run's `now`
            .group_by(AuditEvent.transaction_id)
        ).scalars()
        assert list(per_tx) == [1] * expected
        verified = audit.verify(s)
    assert verified.ok, verified.message()


def test_label_studio_keeps_its_state_in_postgresql(settings: Settings) -> None:
    from cli.doctor import labelstudio_database
    from labeling import server as labelstudio

    assert settings.labelstudio_token, "the install's credentials"
    try:
        assert labelstudio.start_configured(settings) is not None
        assert labelstudio.check_token(settings.labelstudio_url, settings.labelstudio_token)
        assert settings.labelstudio_username in labelstudio_database(settings)
        assert not (settings.labelstudio_data_dir / "label_studio.sqlite3").exists()
    finally:
        labelstudio.stop(settings.labelstudio_data_dir)
