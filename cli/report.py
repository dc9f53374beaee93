"""`fraudloop report …`: the QA meeting's weekly report, its post-verify audit sample and the
monthly model QA, by hand (the `qa-report`, `audit-sample` and `monthly-model-qa` deployments
run them on their schedules)."""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from fraudloop.errors import FraudloopError
from monitoring.evidently_workspace import UI_PORT

console = Console()
report_app = typer.Typer(
    help="QA reports: weekly (drift, overrides, SLAs, errors by segment, model quality) and the "
    "monthly model QA. `fraudloop report` alone is `fraudloop report weekly`.",
    invoke_without_command=True,
)
AsOf = Annotated[
    datetime | None, typer.Option(help="End of the period reported on (default: now, UTC)")
]


def _show(result: dict[str, Any]) -> None:
    for key in ("report", "pdf", "markdown", "drift_html", "drifted", "mlflow_run"):
        if key in result:
            console.print(f"[bold]{key}[/bold]: {result[key]}", soft_wrap=True)


def _flow(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a report flow in this process; a user's error is one line, without a traceback."""
    from flows.runtime import stop_ephemeral_api

    try:
        return run()
    except FraudloopError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from exc
    finally:
        stop_ephemeral_api()


def _run(name: str, as_of: datetime | None) -> None:
    if name in ("weekly", "drift"):
        from flows.monitor import monitor_flow

        _show(_flow(lambda: monitor_flow(as_of, report=name == "weekly")))
    else:
        from flows.model_qa import model_qa_flow

        _show(_flow(lambda: model_qa_flow(as_of)))


@report_app.callback()
def report(ctx: typer.Context, as_of: AsOf = None) -> None:
    """The weekly QA report, unless a report is named."""
    if ctx.invoked_subcommand is None:
        _run("weekly", as_of)


@report_app.command()
def weekly(as_of: AsOf = None) -> None:
    """The weekly QA report over the policy's `report.weekly_days` (HTML, PDF, Markdown under
    reports/, logged to MLflow, its Evidently run kept in the workspace)."""
    _run("weekly", as_of)


@report_app.command()
def drift(as_of: AsOf = None) -> None:
    """The day's drift check alone (Evidently, kept in the workspace; the `drift-check`
    deployment runs it daily): the weekly report of the same day then reads it, not again."""
    _run("drift", as_of)


@report_app.command("model-qa")
def model_qa(as_of: AsOf = None) -> None:
    """The monthly model QA over `report.monthly_days`: cohorts, bias checks, drift, champions."""
    _run("model-qa", as_of)


@report_app.command("audit-sample")
def audit_sample(
    week_ending: Annotated[
        datetime | None,
        typer.Option(help="Sample the week before this date's midnight (default: today, UTC)"),
    ] = None,
) -> None:
    """Open the post-verify audit sample of a week's automatic decisions (policy
    `report.audit_sample`; the `audit-sample` deployment runs it weekly). A week already
    sampled opens nothing."""
    from flows.audit_sample import audit_sample_flow

    result = _flow(lambda: audit_sample_flow(week_ending))
    week = f"{result['week_start'][:10]} to {result['week_end'][:10]}"
    if result["already_sampled"]:
        console.print(f"{week}: already sampled ({result['already_sampled']} cases), none opened")
        return
    for stratum, n in result["opened"].items():
        console.print(f"{week} {stratum}: {n} of {result['population'][stratum]} opened")


@report_app.command("evidently-ui")
def evidently_ui(
    port: Annotated[int, typer.Option(help="Port of the Evidently UI")] = UI_PORT,
) -> None:
    """Serve the Evidently workspace (every drift and weekly QA run, as a trend) until stopped."""
    import subprocess
    import sys

    from fraudloop.settings import get_settings
    from monitoring.evidently_workspace import ui_argv, workspace_dir

    home = get_settings().home
    workspace_dir(home).mkdir(parents=True, exist_ok=True)
    console.print(f"Evidently UI: http://127.0.0.1:{port}  ({workspace_dir(home)})", soft_wrap=True)
    raise typer.Exit(subprocess.call(ui_argv(sys.executable, home, port)))
