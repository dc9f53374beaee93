"""`fraudloop bench …`: speed and model-quality benchmarks (numbers for benchmarks/RESULTS.md).

Benchmark code lives in the repository's `benchmarks/` package (run from a checkout); heavy
imports happen inside each command.
"""

import json
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fraudloop.errors import FraudloopError
from fraudloop.settings import get_settings

HandbookData = Annotated[
    Path, typer.Option(help="Parquet in the handbook's columns (TX_DATETIME, …)")
]
bench_app = typer.Typer(help="Benchmarks: speed and model quality", no_args_is_help=True)
console = Console()

Out = Annotated[Path | None, typer.Option(help="Write the result as JSON")]
LabelStudioUrl = Annotated[
    str | None,
    typer.Option(
        "--url", help="A running Label Studio (default: this install's, started as `up` does)"
    ),
]
LabelStudioToken = Annotated[
    str | None, typer.Option("--token", help="Its API token (default: this install's)")
]


@bench_app.command("scoring")
def scoring(
    rows: Annotated[int, typer.Option(help="Transactions to score end to end")] = 100_000,
    db: Annotated[str | None, typer.Option(help="Store URL (default: a fresh SQLite file)")] = None,
    chunk: Annotated[int, typer.Option(help="Transactions per score_batch call")] = 10_000,
    out: Out = None,
) -> None:
    """score_batch end to end vs bare xgboost predict + pred_contribs on the same rows."""
    from benchmarks import scoring as bench
    from fraudloop.policy import load_policy

    policy = load_policy(get_settings().policy_file)
    _report(bench.run(rows, db, policy, chunk), out)


@bench_app.command("api")
def api(
    requests: Annotated[int, typer.Option(help="Timed requests (after 20 warm-up ones)")] = 1_000,
    concurrency: Annotated[int, typer.Option(help="Clients sending at once")] = 1,
    workers: Annotated[
        str,
        typer.Option(help="API worker processes (serve --workers), comma-separated: side by side"),
    ] = "1",
    db: Annotated[str | None, typer.Option(help="Store URL (default: a fresh SQLite file)")] = None,
    out: Out = None,
) -> None:
    """POST /v1/score latency over loopback against `fraudloop serve`, per worker count."""
    from benchmarks import api as bench

    _report(bench.run(requests, concurrency, _counts(workers), db), out)


@bench_app.command("handbook")
def handbook(
    data: HandbookData,
    train_start: Annotated[
        datetime, typer.Option(help="First training day", formats=["%Y-%m-%d"])
    ] = datetime(2018, 7, 25),
    train_days: Annotated[int, typer.Option(help="Training days")] = 7,
    delay_days: Annotated[
        int, typer.Option(help="Gap whose labels are not known yet (chargeback delay)")
    ] = 7,
    test_days: Annotated[int, typer.Option(help="Test days after the gap")] = 7,
    folds: Annotated[int, typer.Option(help="Prequential folds for fraudloop's selection")] = 4,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: the project settings')")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON")] = None,
) -> None:
    """The handbook's protocol: its baselines and fraudloop on the same window, logged to MLflow."""
    import time

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from benchmarks import handbook as hb
    from fraudloop.errors import FraudloopError
    from models.features import FeatureConfig
    from simulation.world import load_handbook

    started = time.perf_counter()
    window = hb.Window(train_start, train_days, delay_days, test_days)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("loading data", total=None)

        def step(what: str) -> None:
            progress.update(task, description=what)

        try:
            tx = load_handbook(data)
            hb.check_inside(tx, [window, *window.folds(folds)])
        except (FraudloopError, FileNotFoundError, KeyError) as exc:
            console.print(f"[red]error:[/red] --data / --train-start: {exc}", soft_wrap=True)
            raise typer.Exit(code=2) from exc
        step("features (past only, labels after the delay)")
        frame = hb.with_features(
            tx, *hb.frame_span(window, folds), FeatureConfig(delay_days=delay_days)
        )
        outcome = hb.evaluate_window(frame, window, n_folds=folds, step=step)
        step("logging to MLflow")
        settings = get_settings()
        sha = hb.data_sha256(data)
        run_id = hb.log_outcome(
            outcome,
            sha,
            tracking_uri or settings.tracking_uri,
            artifact_root=None if tracking_uri else settings.mlflow_artifacts,
        )
    result = hb.result_json(outcome, sha)
    _print_handbook(result, outcome)
    console.print(
        f"test rows {len(outcome.test):,} · selected {outcome.selection.params} · "
        f"MLflow run {run_id} · {time.perf_counter() - started:.0f} s",
        soft_wrap=True,
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


@bench_app.command("train")
def train_speed(
    data: HandbookData,
    as_of: Annotated[
        datetime, typer.Option(help="Train on the window ending here", formats=["%Y-%m-%d"])
    ] = datetime(2018, 8, 1),
    window_days: Annotated[int, typer.Option(help="Training window")] = 60,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON")] = None,
) -> None:
    """Time the served training path: features, fit + calibration, MLflow log + register.

    A retrain logs into an existing tracking store, so the fresh SQLite store's creation
    (schema migrations) is done first and reported apart, outside the total.
    """
    import tempfile
    import time
    from datetime import timedelta

    from mlflow.tracking import MlflowClient

    from models import registry
    from models.features import DEFAULT_CONFIG
    from models.train import train_model
    from models.training_set import build_training_frame
    from simulation.world import chargeback_labels, load_handbook

    tx = load_handbook(data)
    since = as_of - timedelta(days=window_days + DEFAULT_CONFIG.history_days)
    tx = tx[(tx["tx_datetime"] >= since) & (tx["tx_datetime"] < as_of)]
    labels = chargeback_labels(tx, DEFAULT_CONFIG.delay_days)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as home:
        t = time.perf_counter()
        MlflowClient(tracking_uri=f"sqlite:///{home}/mlflow.db").search_experiments()
        store_setup = time.perf_counter() - t
        t = time.perf_counter()
        frame = build_training_frame(tx, labels, as_of, window_days)
        seconds["features"] = time.perf_counter() - t
        t = time.perf_counter()
        model = train_model(frame.X, frame.y)
        seconds["fit_and_calibration"] = time.perf_counter() - t
        t = time.perf_counter()
        registry.log_and_register(
            model,
            frame.X,
            {},
            {"window_days": window_days},
            {"end": f"{as_of:%Y-%m-%d}"},
            f"sqlite:///{home}/mlflow.db",
            "bench-train",
        )
        seconds["mlflow_log_and_register"] = time.perf_counter() - t
    window = tx["tx_datetime"] >= as_of - timedelta(days=window_days)
    result = {
        "window_rows": int(window.sum()),
        "labelled_rows": len(frame.y),
        "seconds": {k: round(v, 2) for k, v in seconds.items()}
        | {"total": round(sum(seconds.values()), 2)},
        "untimed_store_setup_seconds": round(store_setup, 2),
    }
    _report(result, out)


@bench_app.command("checkpoint")
def checkpoint(
    events: Annotated[int, typer.Option(help="Audit events in the chain to sign")] = 1_000_000,
    db: Annotated[
        str | None, typer.Option(help="Scratch store URL, filled with --events (default: SQLite)")
    ] = None,
    out: Out = None,
) -> None:
    """`fraudloop audit checkpoint` over a chain of --events: read the hashes in order, check
    the links and head row, the RFC 6962 Merkle root, sign and write. Building the chain first
    is reported apart, outside the timing."""
    import tempfile
    import time
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from fraudloop import audit, checkpoints
    from fraudloop.clock import utcnow
    from fraudloop.storage import make_engine, migrate

    per_append, start = 50_000, datetime(2026, 1, 1)
    with tempfile.TemporaryDirectory() as scratch:
        url = db or f"sqlite:///{scratch}/store.db"
        migrate(url)
        engine = make_engine(url)
        t = time.perf_counter()
        for first in range(0, events, per_append):
            batch = [
                audit.event(
                    f"bench:{i}",
                    "decision",
                    "model",
                    start + timedelta(milliseconds=i),
                    transaction_id=f"tx-{i}",
                    decision="auto_approve",
                    model_confidence=0.93,
                )
                for i in range(first, min(events, first + per_append))
            ]
            with Session(engine) as s, s.begin():
                audit.append(s, batch)
        build = time.perf_counter() - t
        key, _ = checkpoints.ensure_key(Path(scratch) / checkpoints.KEY_FILE)
        t = time.perf_counter()
        with Session(engine) as s:
            signed, _ = checkpoints.make(s, Path(scratch) / "checkpoints", key, utcnow())
        seconds = time.perf_counter() - t
        engine.dispose()
    result = {
        "events": signed.n_events,
        "store": url.split(":", 1)[0],
        "checkpoint_seconds": round(seconds, 2),
        "untimed_chain_build_seconds": round(build, 1),
    }
    _report(result, out)


@bench_app.command("review-sync")
def review_sync(
    tasks: Annotated[
        int, typer.Option(help="Review cases delivered to the queues, and answers applied back")
    ] = 10_000,
    webhooks: Annotated[
        int, typer.Option(help="Answers timed from submit to audit event by webhook (0: none)")
    ] = 200,
    micro_batch: Annotated[
        int | None, typer.Option(help="Tasks per import (default: the policy's)")
    ] = None,
    url: LabelStudioUrl = None,
    token: LabelStudioToken = None,
    out: Out = None,
) -> None:
    """Label sync at scale: deliver --tasks cases, apply as many new answers, then a pass inside
    the watermark's overlap and an idle one (nothing changed: it should read no task); the
    webhook's submit-to-audit latency."""
    from benchmarks import review_sync as bench
    from fraudloop.policy import load_policy

    batch = micro_batch or load_policy(get_settings().policy_file).review.micro_batch
    with _labelstudio(url, token) as (ls_url, ls_token):
        result = _bench(bench.run, ls_url, ls_token, tasks, webhooks, batch)
    _table(
        f"review sync, {tasks:,} cases",
        [
            ("deliver (outbox to the queues)", f"{result['deliver_seconds']} s"),
            ("apply the new answers", _pass(result, "apply")),
            ("again, inside the overlap", _pass(result, "overlap_resync")),
            ("idle: nothing changed", _pass(result, "idle")),
            ("webhook submit to audit, p50 / p95", _webhook(result)),
        ],
    )
    _report(result, out)


@bench_app.command("scheduled-run")
def scheduled_run(
    rows: Annotated[int, typer.Option(help="Transactions in each landing file scored")] = 1_000,
    repeats: Annotated[int, typer.Option(help="Timed pairs, in-process then triggered")] = 5,
    customers: Annotated[int, typer.Option(help="Customers of the simulated world")] = 1_000,
    url: LabelStudioUrl = None,
    token: LabelStudioToken = None,
    out: Out = None,
) -> None:
    """What a scheduled scoring run costs over the scoring: one landing file scored by the
    score-intake flow in this process, and by the score-intake deployment triggered on a real
    Prefect server, alternately."""
    from benchmarks import scheduled_run as bench

    with _labelstudio(url, token) as labelstudio:
        result = _bench(bench.run, rows, repeats, labelstudio, customers)
    _table(
        f"scheduled scoring run, {rows:,} transactions a file, median of {repeats}",
        [
            ("(a) the flow called in-process", f"{result['in_process_median_s']} s"),
            ("(b) the deployment triggered, to completed", f"{result['triggered_median_s']} s"),
            ("    until its run began", f"{result['triggered_until_running_median_s']} s"),
            ("    its run", f"{result['triggered_running_median_s']} s"),
            ("overhead (b - a)", f"{result['overhead_median_s']} s"),
        ],
    )
    _report(result, out)


@bench_app.command("replay")
def replay(  # noqa: PLR0913 - the benchmark's protocol, one option each
    data: Annotated[
        str,
        typer.Option(
            help="Handbook parquet, or sim:customers=N,days=N,drift=X,drift_day=N (simulated)"
        ),
    ],
    start: Annotated[
        datetime | None,
        typer.Option(
            help="First replay day (a parquet needs it; sim: once its history allows)",
            formats=["%Y-%m-%d"],
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="Days replayed")] = 28,
    budget: Annotated[int, typer.Option(help="Cards reviewed a day")] = 100,
    delay_days: Annotated[int, typer.Option(help="Days until a payment's chargeback label")] = 7,
    strategies: Annotated[
        str,
        typer.Option(
            help="Comma-separated: default (the policy's), top_score, uncertainty, diversity, "
            "impact, mix, each also as NAME@matured (trained on matured rows only, reviews in "
            "the features) or NAME@training (reviews in the training set only); the baselines "
            "static, delayed, random always run"
        ),
    ] = "default,top_score,mix",
    reviewer_error: Annotated[float, typer.Option(help="Share of wrong reviewer labels")] = 0.0,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds")] = "0",
    workers: Annotated[
        int, typer.Option(help="Arms replayed at once, one process each (one core each)")
    ] = 2,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: the project settings')")
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write the page with the daily curves")
    ] = None,
    out: Out = None,
) -> None:
    """The active-learning loop replayed day by day per strategy against the baselines:
    CP@100 and its ceiling, fraud caught, amount prevented, exploration's estimate of what was
    missed; logged to MLflow."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from benchmarks import replay as rp
    from benchmarks import replay_report as report
    from fraudloop.policy import load_policy
    from pipeline.features import model_config
    from simulation.world import load_handbook

    settings = get_settings()
    try:
        policy = load_policy(settings.policy_file)
        config = model_config(policy).with_delay(delay_days)
        learning = policy.learning.model_copy(update={"chargeback_delay_days": delay_days})
        lead = config.features.history_days + learning.train_window_days
        if data.startswith("sim:"):
            loaded = rp.simulated(data, days, lead)
        elif start is None:
            raise FraudloopError(f"--start: give the first replay day for --data {data}")
        else:
            loaded = rp.ReplayData(load_handbook(data), start)
        arm_list = rp.arms(policy.active_learning, [s for s in strategies.split(",") if s])
    except (FraudloopError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    seed_list = [int(s) for s in seeds.split(",")]
    results: dict[int, dict[str, Any]] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("replay: arms done", total=len(seed_list) * len(arm_list))
        for seed in seed_list:
            cfg = rp.ReplayConfig(loaded.start, days, budget, delay_days, reviewer_error, seed)

            def finished(arm: str, seed: int = seed) -> None:
                progress.update(task, advance=1, description=f"seed {seed}: {arm} done")

            replay = rp.Replay(loaded.tx, cfg, config, learning)
            results[seed] = rp.run_arms(replay, arm_list, workers, finished)
    default = rp.DEFAULT if rp.DEFAULT in strategies.split(",") else arm_list[-1].name
    result = report.summary(results, default, loaded.drift_day)
    title = f"Replay from {loaded.start:%Y-%m-%d}, {days} days, budget {budget}"
    page = report.page(result, report.curves_png(results), title)
    if html_out:
        console.print(f"page -> {report.write(html_out, page)}")
    params = {
        "data": data,
        "start": f"{loaded.start:%Y-%m-%d}",
        "days": days,
        "budget": budget,
        "delay_days": delay_days,
        "reviewer_error": reviewer_error,
        "seeds": seeds,
        "workers": workers,
        "policy": policy.version,
        "model_config": config.version,
    }
    result["mlflow_run_id"] = report.log_to_mlflow(
        result,
        params,
        page,
        tracking_uri or settings.tracking_uri,
        None if tracking_uri else settings.mlflow_artifacts,
    )
    _print_replay(result)
    _report({**params, **result}, out)


def _print_replay(result: dict[str, Any]) -> None:
    from benchmarks.replay_report import chargeback_ceiling, paired

    table = Table(title="replay: CP@100 per strategy")
    columns = (
        "strategy",
        "CP@100",
        "by week",
        "ceiling / with chargebacks",
        "vs static",
        "weeks 2-4",
        "vs delayed",
    )
    for column in (*columns, "caught"):
        table.add_column(column)
    for name, s in result["strategies"].items():
        table.add_row(
            name + (" (default)" if name == result["default"] else ""),
            f"{s['cp100_mean']:.4f}",
            " ".join(f"{v:.3f}" for v in s["cp100_by_week"]),
            f"{s['ceiling_mean']:.3f} / {chargeback_ceiling(s)}",
            paired(s, "vs_static_daily"),
            paired(s, "vs_static_weeks_2_4"),
            paired(s, "vs_delayed_daily"),
            f"{s['fraud_caught']:.0f}",
        )
    console.print(table)


@contextmanager
def _labelstudio(url: str | None, token: str | None) -> Iterator[tuple[str, str]]:
    """(url, token) of the Label Studio given, or of this install's: started as `fraudloop up`
    starts it, and stopped afterwards unless it was already running."""
    if url is not None:
        token = token or get_settings().labelstudio_token
        if not token:
            console.print("[red]error:[/red] --token: the API token of the Label Studio at --url")
            raise typer.Exit(code=2)
        yield url, token
        return
    from cli.main import _installed
    from labeling import server

    settings = _installed()
    running = server.is_up(settings.labelstudio_url)
    _bench(server.start_configured, settings)
    try:
        yield settings.labelstudio_url, settings.labelstudio_token
    finally:
        if not running:
            server.stop(settings.labelstudio_data_dir)


def _counts(workers: str) -> list[int]:
    """`--workers 1,2` as counts, or an error naming the option's value."""
    try:
        return [int(w) for w in workers.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"not a comma-separated list of counts: {workers}") from exc


def _bench(fn: Any, *args: Any) -> Any:
    """Run a benchmark's step; a user's error (a service down, a bad option) without a traceback."""
    try:
        return fn(*args)
    except FraudloopError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from exc


def _pass(result: dict[str, Any], name: str) -> str:
    return f"{result[f'{name}_seconds']} s, {result[f'{name}_rows_read']:,} answers read"


def _webhook(result: dict[str, Any]) -> str:
    if "webhook_p50_s" not in result:
        return "-"
    return f"{result['webhook_p50_s']} s / {result['webhook_p95_s']} s"


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@bench_app.command("dask-scoring")
def dask_scoring(
    rows: Annotated[int, typer.Option(help="Transactions each run scores")] = 1_000_000,
    workers: Annotated[
        str, typer.Option(help="Dask worker counts side by side, comma-separated (0: one process)")
    ] = "1,2",
    db: Annotated[
        str | None,
        typer.Option(
            help="Store (default: SQLite); PostgreSQL: a fresh database per run beside it"
        ),
    ] = None,
    chunk: Annotated[int, typer.Option(help="Transactions per stored chunk")] = 10_000,
    out: Out = None,
) -> None:
    """The scoring flow on one window over each count of Dask workers, in one run."""
    from benchmarks import dask_scoring as bench

    _report(bench.run(rows, _counts(workers), db, chunk), out)


def _print_handbook(result: dict[str, Any], outcome: Any) -> None:
    from rich.table import Table

    w = outcome.window
    table = Table(
        title=f"handbook protocol: train {w.train_start:%Y-%m-%d} +{w.train_days}d, "
        f"delay {w.delay_days}d, test {w.test_start:%Y-%m-%d} +{w.test_days}d"
    )
    for column in ("model", "AUC", "AP", "CP@100", "Brier"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, m in outcome.metrics.items():
        brier = f"{m['brier']:.5f}" if "brier" in m else "—"
        table.add_row(name, f"{m['auc']:.3f}", f"{m['ap']:.3f}", f"{m['cp100']:.3f}", brier)
    console.print(table)


def _report(result: dict[str, Any], out: Path | None) -> None:
    result = {**result, "machine": _machine()}
    console.print_json(json.dumps(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_1m": round(os.getloadavg()[0], 2),
    }


@bench_app.command("weekly-report")
def weekly_report(
    rows: Annotated[int, typer.Option(help="Transactions in the reported week")] = 1_500_000,
    weeks: Annotated[
        int, typer.Option(help="Weeks stored up to the report's end (the week before compared)")
    ] = 2,
    db: Annotated[str | None, typer.Option(help="Store URL (default: a fresh SQLite file)")] = None,
    chunk: Annotated[int, typer.Option(help="Transactions written per store transaction")] = 20_000,
    with_champion: Annotated[
        bool,
        typer.Option(
            "--champion/--no-champion",
            help="Register a champion first, so the report's drift step runs as in production",
        ),
    ] = True,
    after_drift_check: Annotated[
        bool,
        typer.Option(
            "--after-drift-check/--cold",
            help="Run the day's drift check first, untimed, as the schedules do (an hour before "
            "the report, which then reads it); --cold times the report computing drift itself",
        ),
    ] = True,
    out: Out = None,
) -> None:
    """`fraudloop report weekly` over a scratch store of --rows a week, in its own process:
    wall time, peak RSS, per-stage times; the store is built untimed first."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from benchmarks import weekly_report as bench
    from fraudloop.policy import load_policy

    policy = load_policy(get_settings().policy_file)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("building the store", total=None)

        def step(what: str, done: int, total: int) -> None:
            progress.update(task, description=what, completed=done, total=total)

        result = _bench(
            bench.run, rows, weeks, db, policy, chunk, with_champion, step, after_drift_check
        )
    stages = result["stage_seconds"]
    _table(
        f"fraudloop report weekly, {result['rows_in_reported_week']:,} transactions in the week",
        [
            ("wall time", f"{result['seconds']} s"),
            ("peak RSS, the report's process", f"{result['peak_rss_mb']:,.0f} MB"),
            ("peak RSS, its process tree (sampled)", f"{result['tree_peak_rss_mb']:,.0f} MB"),
            *[(f"  {name}", f"{s['seconds']} s ({s['state']})") for name, s in stages.items()],
            ("untimed: building the store", f"{result['untimed_build_seconds']} s"),
        ],
    )
    _report(result, out)
    if result["exit_code"] != 0:
        console.print(f"[red]error:[/red] the report exited with {result['exit_code']}")
        raise typer.Exit(code=1)
