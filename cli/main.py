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
from cli.bench import bench_app
from cli.policy import policy_app
from fraudloop.errors import FraudloopError
from fraudloop.process import apply_process_defaults
from fraudloop.settings import Settings, get_settings

app = typer.Typer(help="Human-in-the-loop fraud decisions.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(bench_app, name="bench")
console = Console()

Source = Annotated[
    Path,
    typer.Option(help="Transactions: parquet or a JSONL drop (default: `fraudloop simulate`'s)"),
]
Feed = Annotated[
    Path, typer.Option(help="Chargeback feed parquet (default: `fraudloop simulate`'s)")
]
When = Annotated[datetime | None, typer.Option(help="Clock for this run (default: now, UTC)")]


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
    """Run the whole loop over a few simulated days and print where to look."""
    from flows.runtime import stop_ephemeral_api
    from simulation.demo import DemoConfig, demo_flow

    _installed()
    config = DemoConfig(live_days=days, customers=customers, reviewer_error_rate=error_rate)
    summary = _run(demo_flow, config, fresh)
    stop_ephemeral_api()  # its goodbye line before the summary, not after
    _print_summary(summary)


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
) -> None:
    """Train on a time window, log to MLflow, register `fraud-detector` (champion if none yet)."""
    from flows.train import train_flow

    result = _run(train_flow, source or _world(), chargebacks or _chargebacks(), as_of, window_days)
    console.print(result)


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

    console.print(_run(sync_flow, now))


@app.command()
def chargebacks(feed: Feed = None, now: When = None) -> None:  # type: ignore[assignment]
    """Record the chargeback labels that have arrived by now."""
    from flows.chargebacks import chargeback_flow

    console.print(_run(chargeback_flow, feed or _chargebacks(), now))


@app.command()
def retrain(as_of: When = None) -> None:
    """Retrain on reviewer + chargeback labels; promote the challenger only if it wins."""
    from flows.retrain import retrain_flow

    console.print(_run(retrain_flow, as_of))


@app.command()
def report(as_of: When = None) -> None:
    """Drift (Evidently), overrides, SLAs and alerts as an HTML report."""
    from flows.monitor import monitor_flow

    console.print(f"report: {_run(monitor_flow, as_of)}")


@app.command()
def deploy(feed: Feed = None) -> None:  # type: ignore[assignment]
    """Serve the scheduled flows (sync, SLA sweep, chargebacks, retrain, QA report) until stopped."""
    from prefect import serve

    from flows.deployments import deployments
    from fraudloop.policy import load_policy

    policy = _run(load_policy, get_settings().policy_file)
    serve(*deployments(policy, feed or _chargebacks()))


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
def up() -> None:
    """Start the Label Studio server (its own environment, offline, telemetry off); the first
    run generates this install's credentials."""
    from labeling import server

    s = _installed()
    _run(server.start_configured, s)
    console.print(
        f"Label Studio: {s.labelstudio_url}  login {s.labelstudio_username} "
        f"(password in {s.home / 'credentials.json'})",
        soft_wrap=True,
    )


@app.command()
def doctor() -> None:
    """Check this install: secrets, the database, Label Studio, the model registry."""
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
        int, typer.Option(help="Worker processes (one per core: each keeps its own warm model)")
    ] = 1,
) -> None:
    """Online API: POST /v1/score, decision reads, /healthz and /readyz (OpenAPI at /docs)."""
    import uvicorn

    from api.app import create_app
    from fraudloop.storage import migrate

    settings = get_settings()
    _run(settings.require_secrets)
    _run(migrate, settings.database_url)
    if workers == 1:
        uvicorn.run(_run(create_app, settings), host=host, port=port, log_level="info")
    else:  # workers are new processes: they build the app from the same environment
        uvicorn.run("api.app:create_app", factory=True, workers=workers, host=host, port=port)


@app.command()
def down() -> None:
    """Stop the Label Studio server."""
    from labeling import server

    stopped = server.stop(get_settings().labelstudio_data_dir)
    console.print("Label Studio stopped" if stopped else "Label Studio was not running")


def _print_summary(summary: dict) -> None:  # type: ignore[type-arg]
    table = Table(title="fraudloop demo")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary["counts"].items():
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    for key, value in summary["where"].items():
        console.print(f"[bold]{key}[/bold]: {value}")


audit_app = typer.Typer(
    help="Compliance: verify the tamper-evident audit trail, export it.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
app.add_typer(review_cli.app, name="reviewers")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain; exit 1 naming the first edited, deleted or reordered event."""
    from fraudloop import audit
    from fraudloop.storage import migrate, open_session

    url = get_settings().database_url
    migrate(url)
    with open_session(url) as session:
        result = audit.verify(session)
    if result.ok:
        console.print(result.message(), soft_wrap=True, markup=False)
        return
    console.print(f"[red]error:[/red] {result.message()}", soft_wrap=True)
    raise typer.Exit(code=1)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option(help="JSONL file to write (one event a line)")],
    transaction_id: Annotated[
        str | None, typer.Option(help="Only this transaction's events")
    ] = None,
) -> None:
    """Write audit events in chain order, with their hashes, as JSONL."""
    from fraudloop import audit
    from fraudloop.storage import migrate, open_session

    url = get_settings().database_url
    migrate(url)
    with open_session(url) as session:
        n = audit.export_jsonl(session, out, transaction_id)
    console.print(f"{n:,} audit events -> {out}", soft_wrap=True)


if __name__ == "__main__":
    app()
