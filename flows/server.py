"""The scheduler side of `fraudloop up`: a Prefect server with its scheduler (Prefect's temporary
in-process server runs none: deployments served against it never get a run), and the process
that serves every deployment against it. Both run detached under `<home>/prefect`, each with a
pid file and a log, as Label Studio does (`labeling.server`); `fraudloop down` stops exactly
what these pid files name. `start_scheduler` starts both as `fraudloop up`, the demo and the
scheduled-run benchmark all do; `run` triggers a deployment and waits for it;
`deployment_status` reads the server for `fraudloop status`.
"""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import urlparse

import httpx
import psutil
from tenacity import RetryError, retry, retry_if_result, stop_after_delay, wait_fixed

from fraudloop.errors import FraudloopError, ServiceUnavailable
from fraudloop.pids import alive, signal_group
from fraudloop.settings import Settings

if TYPE_CHECKING:  # Prefect loads inside the functions that use it: `fraudloop --help` stays fast
    from prefect.client.schemas.filters import DeploymentFilter, FlowRunFilter
    from prefect.client.schemas.objects import FlowRun

SERVER, RUNNER, API = "prefect-server", "deployments", "api"
FINISHED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
IN_FLIGHT = ("PENDING", "RUNNING", "CANCELLING")
# `fraudloop deploy`: the process serving every deployment, which `fraudloop up` runs detached
RUNNER_COMMAND = [sys.executable, "-m", "cli.main", "deploy"]
# how often that process asks the server for runs to start (Prefect's default is 10 s): a run
# triggered from the UI or `fraudloop run` starts within this (PREFECT_RUNNER_POLL_FREQUENCY,
# if set, wins)
RUNNER_POLL_SECONDS = 2
WAIT_POLL_SECONDS = 1  # how often `run` asks whether its run has finished


@dataclass(frozen=True)
class Service:
    """A detached process of ours: `<run_dir>/<name>.pid` holds its pid and where it answers."""

    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def running(self) -> tuple[int, str] | None:
        """(pid, url) of the live process the pid file names: the same process, by its start
        time, not another one that was given its pid since (after a reboot, say)."""
        try:
            pid_text, url, started = self.pid_file.read_text().split()
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        return (pid, url) if alive(pid) and _started(pid) == started else None

    def start(
        self,
        command: list[str],
        url: str,
        ready: Callable[[], bool],
        env: dict[str, str],
        timeout: float,
    ) -> int:
        """Launch detached (own session: `stop` signals its whole group), wait until `ready`;
        fail as soon as it exits, naming its log."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid} {url} {_started(proc.pid)}\n")
        try:
            _wait(self.name, url, ready, timeout, proc, self.log_file)
        except FraudloopError:
            self.stop()
            raise
        return proc.pid

    def ensure(
        self,
        command: list[str],
        url: str,
        ready: Callable[[], bool],
        env: dict[str, str],
        timeout: float,
    ) -> int | None:
        """`start` unless it runs: our pid, or None when something not ours is already `ready`
        at `url` (then that one is used, and `stop` leaves it alone)."""
        ours = self.running()
        if ours and ours[1] == url:
            _wait(self.name, url, ready, timeout, None, self.log_file)  # may still be starting
            return ours[0]
        if ours:
            raise FraudloopError(
                f"{self.name} of this state dir already runs at {ours[1]} (pid {ours[0]}); "
                "stop it first (`fraudloop down`)"
            )
        if ready():
            return None
        return self.start(command, url, ready, env, timeout)

    def stop(self, grace: float = 20.0) -> bool:
        """SIGTERM its process group, SIGKILL after `grace`; True if it was running."""
        ours = self.running()
        self.pid_file.unlink(missing_ok=True)
        if ours is None:
            return False
        pid = ours[0]
        signal_group(pid, signal.SIGTERM)
        try:
            _wait_gone(pid, grace)
        except RetryError:
            signal_group(pid, signal.SIGKILL)
        return True


def server_service(settings: Settings) -> Service:
    return Service(SERVER, settings.prefect_home)


def runner_service(settings: Settings) -> Service:
    return Service(RUNNER, settings.prefect_home)


def api_service(settings: Settings) -> Service:
    """The online API `fraudloop up` starts (`fraudloop serve`, detached)."""
    return Service(API, settings.home.resolve())


def is_up(api_url: str) -> bool:
    """True when a Prefect server answers its health check at this API URL."""
    return http_ok(f"{api_url.rstrip('/')}/health")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == httpx.codes.OK
    except httpx.HTTPError:
        return False


def server_env(settings: Settings) -> dict[str, str]:
    """The server's environment: its database (SQLite under `<home>/prefect` unless
    `FRAUDLOOP_PREFECT_DATABASE_URL` names PostgreSQL), its address, no analytics."""
    home, url = settings.prefect_home, settings.prefect_api_url
    parsed = urlparse(url)
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": settings.prefect_database_url
        or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_API_HOST": parsed.hostname or "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(parsed.port or 4200),
        "PREFECT_API_URL": url,
        "PREFECT_UI_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def client_env(settings: Settings) -> dict[str, str]:
    """What a process reporting to the server needs (the runner, and the runs it starts)."""
    return {
        "PREFECT_RUNNER_POLL_FREQUENCY": str(RUNNER_POLL_SECONDS),
        **os.environ,
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_API_URL": settings.prefect_api_url,
        "FRAUDLOOP_HOME": str(settings.home.resolve()),  # the same state dir from any cwd
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def start_server(settings: Settings, timeout: float = 300.0) -> int | None:
    """Start the Prefect server and wait until healthy; its pid, or None when a server (not
    ours) already answers at `FRAUDLOOP_PREFECT_API_URL`: then that one is used."""
    url = settings.prefect_api_url
    parsed = urlparse(url)
    command = [sys.executable, "-m", "prefect", "server", "start"]
    command += ["--host", parsed.hostname or "127.0.0.1", "--port", str(parsed.port or 4200)]
    env = server_env(settings)
    return server_service(settings).ensure(command, url, lambda: is_up(url), env, timeout)


def start_runner(
    settings: Settings, command: list[str], names: list[str], timeout: float = 300.0
) -> int:
    """Start the process that serves the deployments (`command`, e.g. `fraudloop deploy`),
    ready once the server holds every one of `names` (`flow/deployment`) as it registered
    them. A runner already running is kept."""
    service, url = runner_service(settings), settings.prefect_api_url
    ours = service.running()
    if ours:
        return ours[0]
    if not is_up(url):
        raise ServiceUnavailable(f"no Prefect server at {url}; start it first (`fraudloop up`)")
    since = datetime.now(UTC)
    env = client_env(settings)
    return service.start(command, url, lambda: registered(url, names, since), env, timeout)


def start_api(settings: Settings, command: list[str], timeout: float = 300.0) -> int | None:
    """Start the online API (`command`, e.g. `fraudloop serve`) at `FRAUDLOOP_API_URL`, ready
    when `/healthz` answers; None when an API not ours already answers there."""
    url = settings.api_url.rstrip("/")

    def ready() -> bool:
        return http_ok(f"{url}/healthz")

    return api_service(settings).ensure(command, url, ready, client_env(settings), timeout)


@dataclass(frozen=True)
class Scheduler:
    """What `start_scheduler` started or found running."""

    server_pid: int | None  # None: a server not ours already answered, and is used
    runner_pid: int
    deployments: list[str]  # `flow/deployment`, as the server names them


def start_scheduler(
    settings: Settings, schedules: bool = True, timeout: float = 300.0
) -> Scheduler:
    """The Prefect server and the process serving every deployment (`RUNNER_COMMAND`), as
    `fraudloop up` starts them, their schedules active; with `schedules=False` registered
    paused (or paused, for a runner already serving), once any run already started has ended: for a caller that triggers every run itself at
    times of its own (the demo's simulated days, which a scheduled run at today's date would
    act on)."""
    from flows.deployments import deployments, full_name
    from fraudloop.policy import load_policy

    made = deployments(load_policy(settings.policy_file))
    names = [full_name(d.name, made) for d in made]
    server_pid = start_server(settings, timeout)
    command = RUNNER_COMMAND if schedules else [*RUNNER_COMMAND, "--paused"]
    runner_pid = start_runner(settings, command, names, timeout)
    set_schedules(settings.prefect_api_url, names, active=schedules, timeout=timeout)
    return Scheduler(server_pid, runner_pid, names)


def set_schedules(api_url: str, names: list[str], active: bool, timeout: float = 300.0) -> None:
    """Resume or pause the schedules of these deployments (a paused one still runs when
    triggered); pausing drops the runs scheduled next and waits until none is in flight."""
    with client(api_url) as c:
        ids = [c.read_deployment_by_name(name).id for name in names]
        for deployment_id in ids:
            if active:
                c.resume_deployment(deployment_id)
            else:
                c.pause_deployment(deployment_id)
    if active:
        return
    poll = retry(retry=retry_if_result(bool), stop=stop_after_delay(timeout), wait=wait_fixed(1))(
        in_flight
    )
    try:
        poll(api_url, ids)
    except RetryError as exc:
        raise ServiceUnavailable(
            f"runs started before the schedules were paused still go after {timeout:.0f} s; "
            f"see them in the Prefect UI, {ui_url(api_url)}"
        ) from exc
    with client(api_url) as c:  # the scheduler may have inserted runs from a read before the pause
        for run in c.read_flow_runs(
            deployment_filter=_deployment_ids(ids), flow_run_filter=_in_states("SCHEDULED")
        ):
            if run.auto_scheduled:
                c.delete_flow_run(run.id)


def in_flight(api_url: str, deployment_ids: list[Any]) -> list[Any]:
    """Runs of these deployments that are starting, running or being cancelled."""
    with client(api_url) as c:
        return list(
            c.read_flow_runs(
                deployment_filter=_deployment_ids(deployment_ids),
                flow_run_filter=_in_states(*IN_FLIGHT),
            )
        )


def _deployment_ids(ids: list[Any]) -> "DeploymentFilter":
    from prefect.client.schemas.filters import DeploymentFilter

    return DeploymentFilter(id={"any_": ids})


def _in_states(*types: str) -> "FlowRunFilter":
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    return FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(t) for t in types]))
    )


def stop(settings: Settings) -> dict[str, bool]:
    """Stop the runner, the API, then the server (the runner pauses its schedules on the way
    out, through the server); True for each that was running."""
    return {
        RUNNER: runner_service(settings).stop(),
        API: api_service(settings).stop(),
        SERVER: server_service(settings).stop(),
    }


def ui_url(api_url: str) -> str:
    return api_url.rstrip("/").removesuffix("/api")


@contextmanager
def reporting_to(api_url: str) -> Iterator[None]:
    """Flows run in this process report to this server (not Prefect's temporary one)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        yield


@contextmanager
def client(api_url: str) -> Iterator[Any]:
    """A Prefect client for this server, whatever `PREFECT_API_URL` this process has."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        yield c


def registered(api_url: str, names: list[str], since: datetime) -> bool:
    """True when the server holds each deployment, registered (or updated) since `since`."""
    from prefect.exceptions import ObjectNotFound

    try:
        with client(api_url) as c:
            for name in names:
                if c.read_deployment_by_name(name).updated < since:
                    return False
    except (ObjectNotFound, httpx.HTTPError):
        return False
    return True


@dataclass(frozen=True)
class DeploymentStatus:
    name: str  # flow/deployment
    schedule: str
    paused: bool
    next_run: datetime | None
    last_state: str | None  # of the last run that finished
    last_run: datetime | None  # when it finished


def deployment_status(api_url: str) -> list[DeploymentStatus]:
    """Each deployment the server holds: its schedule, next scheduled run and last run."""
    with client(api_url) as c:
        flows = {f.id: f.name for f in c.read_flows()}
        return [
            _status(c, f"{flows.get(d.flow_id, '?')}/{d.name}", d)
            for d in sorted(c.read_deployments(), key=lambda d: d.name)
        ]


def _status(c: Any, name: str, deployment: Any) -> DeploymentStatus:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        FlowRunFilter,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    def first(types: list[StateType], sort: FlowRunSort, started: bool | None) -> Any:
        runs = c.read_flow_runs(
            deployment_filter=DeploymentFilter(id={"any_": [deployment.id]}),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types)),
                start_time=FlowRunFilterStartTime(
                    is_null_=None if started is None else not started
                ),
            ),
            sort=sort,
            limit=1,
        )
        return runs[0] if runs else None

    upcoming = first([StateType.SCHEDULED], FlowRunSort.EXPECTED_START_TIME_ASC, None)
    # the last run that finished after it started (one cancelled because the one before was
    # still going never started)
    last = first([StateType(t) for t in FINISHED], FlowRunSort.END_TIME_DESC, True)
    return DeploymentStatus(
        name=name,
        schedule=", ".join(_schedule_text(s.schedule) for s in deployment.schedules) or "by hand",
        paused=bool(deployment.paused),
        next_run=upcoming.expected_start_time if upcoming else None,
        last_state=last.state.name if last and last.state else None,
        last_run=last.end_time if last else None,
    )


def _schedule_text(schedule: Any) -> str:
    interval = getattr(schedule, "interval", None)
    if interval is not None:
        return f"every {interval.total_seconds():g} s"
    cron = getattr(schedule, "cron", None)
    return f"cron {cron}" if cron else str(schedule)


class Ran(NamedTuple):
    """A triggered run as it ended (or stood when the wait ran out)."""

    name: str  # the flow run's
    state: str  # its state's name, and Prefect's message if any

    @property
    def completed(self) -> bool:
        return self.state.startswith("Completed")


def run(
    api_url: str, name: str, timeout: float | None, parameters: dict[str, Any] | None = None
) -> Ran:
    """Trigger a deployment by hand and wait for it (`trigger`), told in words."""
    flow_run = trigger(api_url, name, timeout, parameters)
    state = flow_run.state
    said = f" ({state.message})" if state and state.message else ""
    return Ran(flow_run.name, (state.name if state and state.name else "unknown") + said)


def trigger(
    api_url: str, name: str, timeout: float | None, parameters: dict[str, Any] | None = None
) -> "FlowRun":
    """Trigger a deployment (these flow parameters over the deployment's) and wait for it: at
    most `timeout` seconds, None until done; the flow run as it ended, or stood by then."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    if not is_up(api_url):
        raise ServiceUnavailable(f"no Prefect server at {api_url}; start it with `fraudloop up`")
    try:
        name = name if "/" in name else _full_name(api_url, name)
        with reporting_to(api_url):
            return cast(
                "FlowRun",
                run_deployment(
                    name,
                    parameters=parameters,
                    timeout=timeout,
                    poll_interval=WAIT_POLL_SECONDS,
                    as_subflow=False,
                ),
            )
    except ObjectNotFound as exc:
        raise FraudloopError(
            f"the Prefect server at {api_url} has no deployment {name}; serve the deployments "
            "with `fraudloop up` (or `fraudloop deploy`)"
        ) from exc


def _full_name(api_url: str, name: str) -> str:
    """`flow/deployment` of the one deployment the server holds under this name."""
    with client(api_url) as c:
        flows = {f.id: f.name for f in c.read_flows()}
        held = [f"{flows.get(d.flow_id, '?')}/{d.name}" for d in c.read_deployments()]
    found = [h for h in held if h.endswith(f"/{name}")]
    if len(found) != 1:
        raise FraudloopError(
            f"the Prefect server at {api_url} has no deployment {name!r} (it has: "
            f"{', '.join(sorted(held)) or 'none'}); serve them with `fraudloop up`"
        )
    return found[0]


def _wait(
    name: str,
    url: str,
    ready: Callable[[], bool],
    timeout: float,
    proc: subprocess.Popen[bytes] | None,
    log: Path,
) -> None:
    def probe() -> bool:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(
                f"{name} exited with code {proc.returncode} while starting; see {log}"
            )
        return ready()

    poll = retry(
        retry=retry_if_result(lambda up: not up), stop=stop_after_delay(timeout), wait=wait_fixed(1)
    )(probe)
    try:
        poll()
    except RetryError as exc:
        raise ServiceUnavailable(
            f"{name} ({url}) was not ready within {timeout:.0f} s; see {log}"
        ) from exc


def _wait_gone(pid: int, grace: float) -> None:
    retry(
        retry=retry_if_result(lambda alive: alive),
        stop=stop_after_delay(grace),
        wait=wait_fixed(0.2),
    )(alive)(pid)


def _started(pid: int) -> str:
    """When the process started (the kernel's clock ticks since boot, as psutil reads them)."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return "gone"
