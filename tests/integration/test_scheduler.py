"""The loop on its own schedule: a real Prefect server (`prefect server start`, a free port, its
SQLite under a temporary home) and the process serving every deployment, started as `fraudloop
up` starts them; files dropped in the landing folder are scored by scheduled runs.

No Label Studio and no champion here: decisions go by the fallback rules and reviews stay in
the outbox (both covered elsewhere); what is tested is the scheduling, the intake and the crash.
"""

import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner
from waiting import free_port, until

from cli.main import app
from flows import server
from flows.deployments import deployments, full_name
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR, Settings, get_settings
from fraudloop.storage import AuditEvent, Decision, IntakeFile, Quarantine, migrate, open_session

pytestmark = pytest.mark.integration
INTERVAL = 5  # seconds between scheduled scoring runs
KILLED_ROWS, CHUNK = 20_000, 10  # a file long enough to kill its run halfway


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A Prefect server and the deployment runner of a fresh home, stopped at the end."""
    home = tmp_path_factory.mktemp("home")
    policy = yaml.safe_load((PACKAGE_DIR / "policy.yaml").read_text())
    policy["schedules"]["score_intake_seconds"] = INTERVAL
    policy["intake"]["settle_seconds"] = 1
    (home / "policy.yaml").write_text(yaml.safe_dump(policy))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FRAUDLOOP_HOME", str(home))
        env.setenv("FRAUDLOOP_POLICY_FILE", str(home / "policy.yaml"))
        env.setenv("FRAUDLOOP_PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
        env.setenv("FRAUDLOOP_LABELSTUDIO_URL", f"http://127.0.0.1:{free_port()}")  # down
        env.setenv("FRAUDLOOP_SCORE_CHUNK_ROWS", str(CHUNK))
        env.setenv("PREFECT_RUNNER_POLL_FREQUENCY", "1")
        get_settings.cache_clear()
        settings = get_settings()
        migrate(settings.database_url)  # the test reads the store before any run has made it
        try:
            assert server.start_server(settings) is not None  # ours, on a free port
            made = deployments(load_policy(settings.policy_file))
            names = [full_name(d.name, made) for d in made]
            command = [sys.executable, "-m", "cli.main", "deploy"]  # what `fraudloop up` runs
            server.start_runner(settings, command, names)
            yield settings
        finally:
            stopped = server.stop(settings)
            get_settings.cache_clear()
    assert stopped == {"deployments": True, "api": False, "prefect-server": True}
    assert not server.is_up(settings.prefect_api_url)


def _write_csv(folder: Path, name: str, first: int, n: int) -> list[str]:
    """Drop a transaction file as a producer should: written aside, renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 3, 1)
    lines = ["transaction_id,tx_datetime,customer_id,terminal_id,amount"]
    ids = [f"{name}-{i}" for i in range(first, first + n)]
    for i, tx in enumerate(ids):
        at = start + timedelta(seconds=i)
        lines.append(f"{tx},{at.isoformat()},c{i % 97},t{i % 89},{10 + i % 100}.5")
    part = folder / f"{name}.csv.part"
    part.write_text("\n".join(lines) + "\n")
    part.rename(folder / f"{name}.csv")
    return ids


def _decided(settings: Settings, prefix: str) -> int:
    with open_session(settings.database_url) as s:
        stmt = select(func.count()).where(Decision.transaction_id.like(f"{prefix}-%"))
        return int(s.scalar(stmt) or 0)


def _file(settings: Settings, name: str) -> IntakeFile | None:
    with open_session(settings.database_url) as s:
        return s.scalars(select(IntakeFile).where(IntakeFile.name == name)).one_or_none()


def _runs(settings: Settings, deployment: str, since: datetime) -> list[Any]:
    """Runs of a deployment that ended after `since`, latest first."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterEndTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with server.client(settings.prefect_api_url) as c:
        runs = c.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
            flow_run_filter=FlowRunFilter(end_time=FlowRunFilterEndTime(after_=since)),
            sort=FlowRunSort.END_TIME_DESC,
            limit=200,
        )
    return [r for r in runs if r.end_time is not None and r.end_time >= since]


def test_a_scheduled_run_scores_a_dropped_file(scheduler: Settings) -> None:
    dropped = datetime.now(UTC)
    ids = _write_csv(scheduler.transactions_landing, "first", 0, 30)

    def completed() -> list[Any]:
        return [
            r
            for r in _runs(scheduler, "score-intake", dropped)
            if r.state and r.state.is_completed() and r.auto_scheduled
        ]

    until("scored by a scheduled run", lambda: _decided(scheduler, "first") == len(ids), 240)
    until("that run completed", completed, 60)
    done = _file(scheduler, "first.csv")
    assert done is not None and (done.status, done.rows_done) == ("done", len(ids))
    shown = CliRunner().invoke(app, ["status"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "score-intake/score-intake" in shown.output and "Completed" in shown.output
    assert "monitor/drift-check" in shown.output and "cron 0 6 * * *" in shown.output


def _flow_run_process(settings: Settings) -> psutil.Process | None:
    """The runner's child that runs a flow (the runner names the run in its environment)."""
    runner = server.runner_service(settings).running()
    assert runner is not None
    for child in psutil.Process(runner[0]).children(recursive=True):
        try:
            if "PREFECT__FLOW_RUN_ID" in child.environ():
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_a_run_killed_halfway_is_finished_by_the_next(scheduler: Settings) -> None:
    dropped = datetime.now(UTC)
    ids = _write_csv(scheduler.transactions_landing, "long", 0, KILLED_ROWS)
    started = until(
        "the first chunk stored",
        lambda: (f := _file(scheduler, "long.csv")) is not None and f.rows_done > 0,
        240,
        every=0.02,
    )
    assert started
    process = until("the run's process", lambda: _flow_run_process(scheduler), 10, every=0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    killed_at = _file(scheduler, "long.csv")
    assert killed_at is not None and 0 < killed_at.rows_done < len(ids), "not killed halfway"
    until(
        "finished by a later run",
        lambda: (f := _file(scheduler, "long.csv")) is not None and f.status == "done",
        300,
    )
    assert _decided(scheduler, "long") == len(ids)
    with open_session(scheduler.database_url) as s:
        twice = s.execute(
            select(AuditEvent.transaction_id)
            .where(AuditEvent.transaction_id.like("long-%"))
            .group_by(AuditEvent.transaction_id)
            .having(func.count() > 1)
        ).all()
        assert twice == []
        assert s.scalar(
            select(func.count()).where(AuditEvent.transaction_id.like("long-%"))
        ) == len(ids)
        assert s.scalar(select(func.count()).select_from(Quarantine)) == 0
    finished = _file(scheduler, "long.csv")
    assert finished is not None and finished.note is not None
    resumed_from = int(finished.note.split()[3])
    assert resumed_from >= killed_at.rows_done  # the next run went on from the watermark

    def states() -> set[str]:
        return {r.state.type.value for r in _runs(scheduler, "score-intake", dropped) if r.state}

    until("the finishing run completed", lambda: "COMPLETED" in states(), 60)
    assert "CRASHED" in states()  # the killed one, as its runner reported it


def test_a_deployment_is_triggered_by_hand(scheduler: Settings) -> None:
    """`fraudloop run`: a chargeback file for an unknown id, recorded as quarantined."""
    folder = scheduler.chargebacks_landing
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "disputes.csv").write_text(
        "transaction_id,date,reason\nfirst-0,2026-03-02,10.4 fraud\nnever-seen,2026-03-02,10.4 fraud\n"
    )
    os.utime(folder / "disputes.csv", (time.time() - 60,) * 2)
    ran = CliRunner().invoke(app, ["run", "chargeback-intake"])
    assert ran.exit_code == 0, ran.output
    assert "Completed" in ran.output
    with open_session(scheduler.database_url) as s:
        kept = s.scalars(select(Quarantine)).one()
        assert (kept.transaction_id, kept.field) == ("never-seen", "chargeback.transaction_id")
    missing = CliRunner().invoke(app, ["run", "nightly"])
    assert missing.exit_code == 2
    assert "has no deployment 'nightly'" in " ".join(missing.output.split())


@pytest.mark.postgres
def test_the_prefect_server_keeps_its_state_in_postgresql(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUDLOOP_PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    prefect_db = pg_url.replace("postgresql+psycopg://", "postgresql+asyncpg://")
    monkeypatch.setenv("FRAUDLOOP_PREFECT_DATABASE_URL", prefect_db)
    get_settings.cache_clear()
    settings = get_settings()
    try:
        assert server.start_server(settings) is not None
        assert server.deployment_status(settings.prefect_api_url) == []
    finally:
        assert server.stop(settings)["prefect-server"]
        get_settings.cache_clear()
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT count(*) FROM information_schema.tables WHERE table_name = 'deployment'")
        ).scalar()
    engine.dispose()
    assert tables == 1  # Prefect's own schema, in PostgreSQL
    assert not (settings.prefect_home / "prefect.db").exists()
