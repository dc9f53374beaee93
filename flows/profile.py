"""The server profile (`fraudloop up --profile server`): on this machine, the shape a team runs
across machines, each part a real server on PostgreSQL with a database of its own, created if
missing (`Settings.server_database`): the decision store; an MLflow tracking server that also
serves the artifacts (kept under the state dir); a Prefect server, a process work pool and
workers that run the deployments (instead of one process serving them); Label Studio
(`labeling.server`). Each process is detached with a pid file and a log (`flows.server.Service`).

A machine lost mid-run leaves its flow run "Running" with nobody to report it: flow runs beat
(`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`), an automation marks a run whose beats stop `Crashed`
(Prefect's recipe for zombie runs), and a crashed `score-batch` run is run again with the same
parameters (scoring is idempotent: nothing is decided twice), at most the policy's
`schedules.crashed_reruns_max` times: a run that crashes every time then fails instead of
looping; the intake deployments go on from their watermarks at their next run.
"""

import os
import sys
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import httpx
from prefect.deployments.runner import RunnerDeployment
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from flows import server
from flows.deployments import deployments
from flows.score import score_flow
from fraudloop.errors import ServiceUnavailable
from fraudloop.policy import Policy
from fraudloop.settings import Settings

SERVICES = ("store", "mlflow", "prefect", "labelstudio")  # a database each
MLFLOW, WORKER = "mlflow-server", "prefect-worker"
POOL_TYPE = "process"
HEARTBEAT_SECONDS = 30  # Prefect's least; a run silent for 3 beats is a zombie
SCORE_BATCH = "score-batch"  # windows and backfills by hand (`fraudloop run score-batch`)
CRASH_ZOMBIES, RERUN_CRASHED = "fraudloop: crash zombie runs", "fraudloop: rerun crashed scoring"
STATE_EVENTS = ("Completed", "Failed", "Cancelled", "Crashed")
# the parameters a crashed `score-batch` runs again with: its own, whatever they were, and one
# more rerun counted (`score_flow` fails instead past the policy's `crashed_reruns_max`)
RERUN = (
    '{{ dict(flow_run.parameters, reruns=(flow_run.parameters.get("reruns") or 0) + 1) | tojson }}'
)


def ensure_databases(settings: Settings) -> list[str]:
    """A database per service on the profile's PostgreSQL server; the names it created."""
    admin = create_engine(
        make_url(settings.server_database("store")).set(database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    made = []
    try:
        with admin.connect() as conn:
            for service in SERVICES:
                name = make_url(settings.server_database(service)).database
                found = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                if found is None:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                    made.append(str(name))
    except Exception as exc:  # the server is down or refuses us: say which one
        where = make_url(settings.server_postgres_url).render_as_string(hide_password=True)
        raise ServiceUnavailable(
            f"PostgreSQL at {where} ({type(exc).__name__}); start it or set "
            "FRAUDLOOP_SERVER_POSTGRES_URL"
        ) from exc
    finally:
        admin.dispose()
    return made


def mlflow_service(settings: Settings) -> server.Service:
    return server.Service(MLFLOW, settings.home.resolve())


def worker_services(settings: Settings) -> list[server.Service]:
    return [
        server.Service(f"{WORKER}-{i}", settings.prefect_home)
        for i in range(1, settings.prefect_workers + 1)
    ]


def start_mlflow(settings: Settings, timeout: float = 300.0) -> int | None:
    """The tracking server on its PostgreSQL database, serving the artifacts it keeps under
    `<home>/mlartifacts`; its pid, or None when one not ours already answers there."""
    url = settings.mlflow_server_url.rstrip("/")
    at = urlparse(url)
    settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "mlflow", "server"]
    command += ["--backend-store-uri", settings.server_database("mlflow")]
    command += ["--artifacts-destination", str(settings.mlflow_artifacts)]
    command += ["--host", at.hostname or "127.0.0.1", "--port", str(at.port or 5000)]
    command += ["--workers", "1"]  # training runs and model loads: light traffic

    def ready() -> bool:
        """Its store answers: the first API call makes a fresh database's schema, slowly."""
        try:
            answer = httpx.get(
                f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=120
            )
        except httpx.HTTPError:
            return False
        return answer.status_code == httpx.codes.OK

    return mlflow_service(settings).ensure(command, url, ready, dict(os.environ), timeout)


def worker_env(settings: Settings) -> dict[str, str]:
    """What a worker and the flow runs it starts need: the server, the profile, heartbeats."""
    return {
        **server.client_env(settings),
        "FRAUDLOOP_PROFILE": "server",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    }


def profile_deployments(policy: Policy) -> list[RunnerDeployment]:
    """Every scheduled deployment, and `score-batch` by hand; loaded by module path, so a
    worker imports the installed package instead of copying a source tree per run."""
    by_hand = score_flow.to_deployment(name=SCORE_BATCH)
    made = [*deployments(policy), *([by_hand] if isinstance(by_hand, RunnerDeployment) else [])]
    for d in made:
        if d.entrypoint and ":" in d.entrypoint:
            path, name = d.entrypoint.split(":")
            d.entrypoint = f"{path.removesuffix('.py').replace('/', '.')}.{name}"
    return made


def deploy(settings: Settings, policy: Policy) -> list[str]:
    """The work pool (created if missing), every deployment on it, and the automations that
    crash zombie runs and run a crashed `score-batch` again; the deployments' names."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    url, pool = settings.prefect_api_url, settings.prefect_work_pool
    with server.client(url) as c:
        try:
            c.read_work_pool(pool)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            c.create_work_pool(
                WorkPoolCreate(name=pool, type=POOL_TYPE, base_job_template=template)
            )
    made = profile_deployments(policy)
    with temporary_settings({PREFECT_API_URL: url}):
        ids = {d.name: d.apply(work_pool_name=pool) for d in made}
    ensure_automations(url, ids[SCORE_BATCH])
    return [f"{d.flow_name}/{d.name}" for d in made]


def ensure_automations(api_url: str, score_batch_id: Any) -> None:
    """Zombie runs crashed (no heartbeat for three beats), a crashed `score-batch` run again
    with its parameters; replaced if they exist (idempotent)."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    zombies = AutomationCore(
        name=CRASH_ZOMBIES,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in STATE_EVENTS)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * HEARTBEAT_SECONDS),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {3 * HEARTBEAT_SECONDS} s: its process is gone",
            )
        ],
    )
    again = {"__prefect_kind": "json", "value": {"__prefect_kind": "jinja", "template": RERUN}}
    rerun = AutomationCore(
        name=RERUN_CRASHED,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.id": f"prefect.deployment.{score_batch_id}"}
            ),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[RunDeployment(source="selected", deployment_id=score_batch_id, parameters=again)],
    )
    with server.client(api_url) as c:
        for automation in (zombies, rerun):
            for held in c.read_automations_by_name(automation.name):
                c.delete_automation(held.id)
            c.create_automation(automation)


def start_workers(settings: Settings, timeout: float = 300.0) -> list[int]:
    """`prefect_workers` process workers on the pool, each ready once the server lists it
    online; those already running are kept."""
    url, pool = settings.prefect_api_url, settings.prefect_work_pool
    pids = []
    for service in worker_services(settings):
        ours = service.running()
        if ours:
            pids.append(ours[0])
            continue
        name = f"fraudloop-{service.name}"
        command = [sys.executable, "-m", "prefect", "worker", "start"]
        command += ["--pool", pool, "--type", POOL_TYPE, "--name", name]

        def online(name: str = name) -> bool:
            return worker_online(url, pool, name)

        pids.append(service.start(command, url, online, worker_env(settings), timeout))
    return pids


def worker_online(api_url: str, pool: str, name: str) -> bool:
    try:
        with server.client(api_url) as c:
            workers = c.read_workers_for_work_pool(pool)
    except httpx.HTTPError:
        return False
    return any(w.name == name and str(w.status.value) == "ONLINE" for w in workers if w.status)


def start(settings: Settings, policy: Policy) -> list[str]:
    """Everything but Label Studio and the API (`fraudloop up` starts those for every profile),
    on the databases `ensure_databases` made; what to tell the operator, line by line."""
    mine = mlflow_service(settings)
    pid = start_mlflow(settings)
    lines = [
        f"MLflow: {settings.mlflow_server_url}  ({_whose(pid, mine)}; artifacts in "
        f"{settings.mlflow_artifacts})"
    ]
    pid = server.start_server(settings)
    where = make_url(settings.prefect_database_url or "").render_as_string(hide_password=True)
    lines.append(
        f"Prefect UI: {server.ui_url(settings.prefect_api_url)}  "
        f"({_whose(pid, server.server_service(settings))}; database {where})"
    )
    names = deploy(settings, policy)
    pids = start_workers(settings)
    lines.append(
        f"work pool {settings.prefect_work_pool}: {len(names)} deployments, "
        f"{len(pids)} worker(s) (pids {', '.join(map(str, pids))}, logs in {settings.prefect_home})"
    )
    lines.append(
        f"landing folders: {settings.transactions_landing}  {settings.chargebacks_landing}"
    )
    return lines


def stop(settings: Settings) -> dict[str, bool]:
    """Stop the workers and the tracking server; True for each that was running."""
    stopped = {s.name: s.stop() for s in worker_services(settings)}
    return {**stopped, MLFLOW: mlflow_service(settings).stop()}


def _whose(pid: int | None, service: server.Service) -> str:
    return f"pid {pid}, log {service.log_file}" if pid else "not ours: left as is"
