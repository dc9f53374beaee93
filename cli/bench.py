"""`fraudloop bench …`: speed and model-quality benchmarks (numbers for benchmarks/RESULTS.md).

Benchmark code lives in the repository's `benchmarks/` package (run from a checkout); heavy
imports happen inside each command.
"""

import json
import os
import platform
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fraudloop.settings import get_settings

HandbookData = Annotated[
    Path, typer.Option(help="Parquet in the handbook's columns (TX_DATETIME, …)")
]
bench_app = typer.Typer(help="Benchmarks: speed and model quality", no_args_is_help=True)
console = Console()

Out = Annotated[Path | None, typer.Option(help="Write the result as JSON")]


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
        int, typer.Option(help="API worker processes (fraudloop serve --workers)")
    ] = 1,
    db: Annotated[str | None, typer.Option(help="Store URL (default: a fresh SQLite file)")] = None,
    out: Out = None,
) -> None:
    """POST /v1/score latency over loopback against a real uvicorn process."""
    from benchmarks import api as bench

    _report(bench.run(requests, concurrency, workers, db), out)


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
