"""The `fraudloop` command: one Typer app, grouped by who uses it.

Heavy imports (MLflow, Prefect, Evidently) happen inside commands, so `--help` stays instant.
"""

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli import reviewers as review_cli
from cli.audit import audit_app
from cli.bench import bench_app
from cli.exploration import exploration
from cli.models import models_app
from cli.policy import policy_app
from cli.report import report_app
from fraudloop.errors import FraudloopError
from fraudloop.process import apply_process_defaults
from fraudloop.settings import Settings, get_settings

app = typer.Typer(help="Human-in-the-loop fraud decisions.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(bench_app, name="bench")
app.command("exploration")(exploration)
app.add_typer(audit_app, name="audit")
app.add_typer(models_app, name="models")
console = Console()

Source = Annotated[
    Path,
    typer.Option(help="Transactions: parquet or a JSONL drop (default: `fraudloop simulate`'s)"),
]
Feed = Annotated[
    Path, typer.Option(help="Chargeback feed parquet (default: `fraudloop simulate`'s)")
]
When = Annotated[datetime | None, typer.Option(help="Clock for this run (default: now, UTC)")]
DaskWorkers = Annotated[
    int | None,
    typer.Option(
        help="Fit with xgboost.dask on this many workers, 0: one process (default: "
        "FRAUDLOOP_DASK_WORKERS, or the scheduler at FRAUDLOOP_DASK_ADDRESS)"
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        help="server: each part a real server on PostgreSQL, a work pool and workers run the "
        "deployments (default: FRAUDLOOP_PROFILE, embedded)"
    ),
]


@app.callback()
def main() -> None:
    """Human-in-the-loop fraud decisions: train, score, review, learn, monitor."""
    apply_process_defaults()


def _world() -> Path:
    return get_settings().home / "data" / "world.parquet"


def _chargebacks() -> Path:
    return get_settings().home / "data" / "chargebacks.parquet"


def _run(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run a flow and print user errors without a traceback."""
    try:
        return fn(*args, **kwargs)
    except FraudloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc


@app.command()
def demo(
    days: Annotated[int, typer.Option(help="Simulated days of live scoring")] = 3,
    customers: Annotated[int, typer.Option(help="Simulated customers")] = 1500,
    error_rate: Annotated[float, typer.Option(help="Simulated reviewer error rate")] = 0.05,
    fresh: Annotated[bool, typer.Option(help="Start from an empty state directory")] = True,
) -> None:
    """Run the whole loop over a few simulated days through the deployments (Label Studio,
    a Prefect server and the runner started as `up` starts them, left running) and print
    where to look."""
    from simulation.demo import DemoConfig, run_demo

    _installed()
    config = DemoConfig(live_days=days, customers=customers, reviewer_error_rate=error_rate)

    def say(line: str) -> None:
        console.print(line, markup=False, soft_wrap=True)

    _print_summary(_run(run_demo, config, fresh, say))


@app.command()
def simulate(
    days: Annotated[int, typer.Option(help="Days to simulate")] = 40,
    customers: Annotated[int, typer.Option(help="Number of customers")] = 1500,
    terminals: Annotated[int, typer.Option(help="Number of terminals")] = 3000,
    drift: Annotated[
        float, typer.Option(help="Drift strength from --drift-day on (0 = none)")
    ] = 0.0,
    drift_day: Annotated[int, typer.Option(help="Day the drift starts")] = 35,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: <home>/data)")
    ] = None,
) -> None:
    """Write simulated transactions (ground truth kept for the simulated reviewers) and the
    chargeback feed they give rise to."""
    from fraudloop.policy import load_policy
    from simulation.world import SimulationConfig, write_world
    from simulation.world import simulate as run

    cfg = SimulationConfig(
        n_customers=customers,
        n_terminals=terminals,
        days=days,
        drift=drift,
        drift_start_day=drift_day,
    )
    frame = run(cfg)
    delay = _run(load_policy, get_settings().policy_file).learning.chargeback_delay_days
    files = write_world(frame, out or _world().parent, delay)
    console.print(
        f"{len(frame):,} transactions ({frame['is_fraud'].mean():.2%} fraud) -> "
        f"{files.transactions}; chargeback feed -> {files.chargebacks}"
    )


@app.command()
def train(
    source: Source = None,  # type: ignore[assignment]
    chargebacks: Feed = None,  # type: ignore[assignment]
    as_of: When = None,
    window_days: Annotated[
        int | None, typer.Option(help="Training window (policy default)")
    ] = None,
    dask_workers: DaskWorkers = None,
) -> None:
    """Train on a time window, log to MLflow, register `fraud-detector` (champion if none yet)."""
    from flows.train import train_flow

    source, chargebacks = source or _world(), chargebacks or _chargebacks()
    result = _run(train_flow, source, chargebacks, as_of, window_days, dask_workers)
    console.print(_outcome(result))


@app.command()
def score(
    start: Annotated[datetime, typer.Option(help="Window start")],
    end: Annotated[datetime, typer.Option(help="Window end (exclusive)")],
    source: Source = None,  # type: ignore[assignment]
) -> None:
    """Score one micro-batch with the champion and route it (reviews go to Label Studio)."""
    from flows.score import score_flow

    console.print(_run(score_flow, source or _world(), start, end))


@app.command()
def sync(now: When = None) -> None:
    """Pull reviewer annotations back from Label Studio (reconciliation pass)."""
    from flows.sync import sync_flow

    result = _run(sync_flow, now)
    if result.get("error"):
        console.print(f"[red]error:[/red] {result['error']}", soft_wrap=True)
        raise typer.Exit(code=2)
    console.print(result)


@app.command()
def chargebacks(feed: Feed = None, now: When = None) -> None:  # type: ignore[assignment]
    """Record the chargeback labels that have arrived by now."""
    from flows.chargebacks import chargeback_flow

    console.print(_run(chargeback_flow, feed or _chargebacks(), now))


@app.command()
def retrain(as_of: When = None, dask_workers: DaskWorkers = None) -> None:
    """Retrain on reviewer + chargeback labels; promote the challenger only if it wins."""
    from flows.retrain import retrain_flow

    console.print(_outcome(_run(retrain_flow, as_of, workers=dask_workers)))


@app.command()
def deploy(
    feed: Annotated[
        Path | None, typer.Option(help="Also serve this chargeback label feed (`simulate`'s)")
    ] = None,
    paused: Annotated[
        bool, typer.Option(help="Register the schedules paused: runs only when triggered")
    ] = False,
) -> None:
    """Serve every scheduled deployment against the Prefect server until stopped (`fraudloop
    up` runs this detached): intake scoring, label sync, SLA sweep, chargeback intake, drift
    check, retraining, QA report."""
    import os

    from flows import server

    s = get_settings()
    url = os.environ.setdefault("PREFECT_API_URL", s.prefect_api_url)  # before Prefect loads
    if not server.is_up(url):  # Prefect's temporary server would run no schedule at all
        console.print(f"[red]error:[/red] no Prefect server at {url}; `fraudloop up` starts one")
        raise typer.Exit(code=2)
    from prefect import serve

    from flows.deployments import deployments
    from fraudloop.policy import load_policy

    serve(*deployments(_run(load_policy, s.policy_file), feed, paused=paused))


def _installed() -> Settings:
    """Settings with this install's credentials, generated on first use (owner-only file)."""
    from fraudloop import credentials

    home = get_settings().home
    target, made = _run(credentials.ensure, home)
    if made:
        console.print(f"generated per-install credentials -> {target} (mode 600)", soft_wrap=True)
    get_settings.cache_clear()
    settings = get_settings()
    _run(settings.require_secrets)
    return settings


@app.command()
def up(
    scheduler: Annotated[
        bool, typer.Option(help="Also a Prefect server and the deployments (no: Label Studio only)")
    ] = True,
    api: Annotated[bool, typer.Option(help="Also the online API at FRAUDLOOP_API_URL")] = True,
    profile: ProfileOption = None,
) -> None:
    """Start what the loop needs on this machine and say where each part is: Label Studio
    (offline, telemetry off), a Prefect server with its scheduler, the process serving every
    deployment, the online API. The first run generates this install's credentials."""
    from labeling import server

    _use_profile(profile)
    s = _installed()
    if s.profile == "server":  # a database per service, before any of them starts
        _up_databases(s)
    _run(server.start_configured, s)
    console.print(
        f"Label Studio: {s.labelstudio_url}  login {s.labelstudio_username} "
        f"(password in {s.home / 'credentials.json'})",
        soft_wrap=True,
    )
    if scheduler:
        (_up_server if s.profile == "server" else _up_scheduler)(s)
    if api:
        _up_api(s)


def _use_profile(profile: str | None) -> None:
    """`--profile` is FRAUDLOOP_PROFILE for this command and what it starts."""
    import os

    if profile not in (None, "embedded", "server"):
        raise typer.BadParameter(f"{profile!r}: embedded or server", param_hint="--profile")
    if profile is not None:
        os.environ["FRAUDLOOP_PROFILE"] = profile
        get_settings.cache_clear()


def _up_databases(s: Settings) -> None:
    from flows import profile

    made = _run(profile.ensure_databases, s)
    console.print(f"PostgreSQL: a database per service ({', '.join(made) or 'all there'})")


def _up_server(s: Settings) -> None:
    """The server profile's MLflow and Prefect servers, work pool, deployments and workers."""
    from flows import profile
    from fraudloop.policy import load_policy

    for line in _run(profile.start, s, _run(load_policy, s.policy_file)):
        console.print(line, soft_wrap=True, markup=False)


def _up_scheduler(s: Settings) -> None:
    """The Prefect server and the deployments, schedules active (also those the demo paused)."""
    from flows import server

    up_now = _run(server.start_scheduler, s)
    pid = up_now.server_pid
    mine = f"pid {pid}, log {server.server_service(s).log_file}" if pid else "not ours: left as is"
    console.print(f"Prefect UI: {server.ui_url(s.prefect_api_url)}  ({mine})", soft_wrap=True)
    log = server.runner_service(s).log_file
    console.print(
        f"deployments: {len(up_now.deployments)} served (pid {up_now.runner_pid}, log {log})",
        soft_wrap=True,
    )
    console.print(
        f"landing folders: {s.transactions_landing}  {s.chargebacks_landing}", soft_wrap=True
    )


def _up_api(s: Settings) -> None:
    import sys
    from urllib.parse import urlparse

    from flows import server

    at = urlparse(s.api_url)
    command = [sys.executable, "-m", "cli.main", "serve", "--host", at.hostname or "127.0.0.1"]
    pid = _run(server.start_api, s, [*command, "--port", str(at.port or 8000)])
    mine = f"pid {pid}, log {server.api_service(s).log_file}" if pid else "not ours: left as is"
    console.print(f"API: {s.api_url}/docs  ({mine})", soft_wrap=True)


@app.command()
def status() -> None:
    """Each part of the loop, up or down, with its URL; each deployment's schedule, next
    scheduled run and the state of its last run."""
    from flows import server
    from labeling import server as labelstudio

    s = get_settings()
    parts = Table(title="fraudloop services")
    for column in ("part", "state", "where", "pid"):
        parts.add_column(column)
    runner = server.runner_service(s).running()
    for name, up_now, where, ours in (
        (
            "Label Studio",
            labelstudio.is_up(s.labelstudio_url),
            s.labelstudio_url,
            labelstudio.running(s.labelstudio_data_dir),
        ),
        (
            "Prefect server",
            server.is_up(s.prefect_api_url),
            server.ui_url(s.prefect_api_url),
            server.server_service(s).running(),
        ),
        ("deployments", runner is not None, str(server.runner_service(s).log_file), runner),
        ("API", server.http_ok(f"{s.api_url}/healthz"), s.api_url, server.api_service(s).running()),
    ):
        state = "[green]up[/green]" if up_now else "[red]down[/red]"
        parts.add_row(name, state, where, str(ours[0]) if ours else "-")
    console.print(parts)
    if not server.is_up(s.prefect_api_url):
        return
    runs = Table(title=f"deployments on {server.ui_url(s.prefect_api_url)}")
    for column in ("deployment", "schedule", "next run (UTC)", "last result", "ended (UTC)"):
        runs.add_column(column)
    for d in _run(server.deployment_status, s.prefect_api_url):
        runs.add_row(
            d.name,
            d.schedule + (" [yellow](paused)[/yellow]" if d.paused else ""),
            f"{d.next_run:%Y-%m-%d %H:%M:%S}" if d.next_run else "-",
            d.last_state or "-",
            f"{d.last_run:%Y-%m-%d %H:%M:%S}" if d.last_run else "-",
        )
    console.print(runs)


@app.command("run")
def run_deployment(
    deployment: Annotated[
        str, typer.Argument(help="A deployment (`fraudloop status` lists them): score-intake, …")
    ],
    wait: Annotated[bool, typer.Option(help="Wait until the run has finished")] = True,
) -> None:
    """Trigger a deployment by hand on the Prefect server, as the UI's "Run" does; exit 1
    when the run did not complete."""
    from flows import server

    url = get_settings().prefect_api_url
    name, state = _run(server.run, url, deployment, None if wait else 0)
    console.print(
        f"{deployment}: flow run {name} {state}  ({server.ui_url(url)})",
        markup=False,
        soft_wrap=True,
    )
    if wait and not state.startswith("Completed"):
        raise typer.Exit(code=1)


@app.command()
def doctor() -> None:
    """Launch readiness, one line each: secrets, database, policy and router, reviewers per
    queue, Label Studio and its telemetry, champion, audit chain, alert sinks, schedules."""
    from cli.doctor import checks

    settings = get_settings()
    failed = 0
    for name, ok, detail in checks(settings):
        failed += not ok
        mark = "[green]ok[/green]  " if ok else "[red]FAIL[/red]"
        console.print(f"{mark} {name}: {detail}", soft_wrap=True)
    if failed:
        raise typer.Exit(code=1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Worker processes (one per core: each keeps its own warm model)"),
    ] = 1,
) -> None:
    """Online API: POST /v1/score, decision reads, /healthz and /readyz (OpenAPI at /docs).
    Several workers share the connections (gunicorn, a socket each: `api.workers`)."""
    import uvicorn

    from api.app import create_app
    from fraudloop.storage import migrate

    settings = get_settings()
    _run(settings.require_secrets)
    _run(migrate, settings.database_url)
    if workers == 1:
        uvicorn.run(_run(create_app, settings), host=host, port=port, log_level="info")
    else:  # each worker builds the app and loads its model after the fork
        from api.workers import serve as serve_workers

        serve_workers(settings, host, port, workers)


@app.command()
def down(profile: ProfileOption = None) -> None:
    """Stop exactly what `fraudloop up` started: the deployments, the API, the Prefect
    server and Label Studio (a server that was not ours is left running)."""
    from flows import server as services
    from labeling import server

    _use_profile(profile)
    s = get_settings()
    if s.profile == "server":  # its workers first: they report to the Prefect server
        from flows import profile as server_profile

        for name, stopped in server_profile.stop(s).items():
            console.print(f"{name} stopped" if stopped else f"{name} was not running (ours)")
    for name, stopped in services.stop(s).items():
        console.print(f"{name} stopped" if stopped else f"{name} was not running (ours)")
    stopped = server.stop(s.labelstudio_data_dir)
    console.print("Label Studio stopped" if stopped else "Label Studio was not running")


def _outcome(result: dict) -> dict:  # type: ignore[type-arg]
    """What a data scientist reads of a training run (its thousands of row ids stay in MLflow)."""
    return {k: v for k, v in result.items() if k != "training_ids"}


def _print_summary(summary: dict) -> None:  # type: ignore[type-arg]
    table = Table(title="fraudloop demo")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary["counts"].items():
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    for key, value in summary["where"].items():
        console.print(f"[bold]{key}[/bold]: {value}")
    console.print(
        "Label Studio, the Prefect server and the deployments keep running: "
        "`uv run fraudloop down` stops them.",
        soft_wrap=True,
    )


app.add_typer(review_cli.app, name="reviewers")
app.add_typer(report_app, name="report")


if __name__ == "__main__":
    app()
