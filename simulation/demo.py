"""The whole loop over a few simulated days: the embedded default a new user runs first.

A simulated world (`simulation.world`) stands in for the card network, the cardholders who
dispute a fraud and the reviewers; everything else is the real thing, started as `fraudloop up`
starts it: Label Studio, a Prefect server with the process serving every deployment, the MLflow
registry, the decision store. The world writes each micro-batch into the transactions landing
folder and each day's chargebacks into the chargebacks landing folder; every step after the
first model is a run of a deployment, triggered with the simulated time and waited for (their
schedules are paused meanwhile: a scheduled run at today's date would act on the simulated
days). Reviewers answer through Label Studio's API as a person would, between those runs. The
summary is read from the store, the registry and the reports afterwards.

The demo itself is no flow: it is the world around the system (and the data scientist who
trains the first model, `train_flow`); what the system did are the deployments' runs.
"""

import json
import os
import random
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from flows import server as scheduler
from flows.runtime import Runtime, runtime
from flows.train import train_flow
from fraudloop.errors import FraudloopError
from fraudloop.feed import read_window, write_jsonl
from fraudloop.policy import QUEUES, SIGNOFF_QUEUE, Route
from fraudloop.settings import Settings, get_settings
from fraudloop.storage import AuditEvent, Decision, open_session
from labeling import server
from labeling.client import connect
from labeling.label_config import OUTCOMES
from labeling.projects import delete_projects
from labeling.reviewers import add_reviewer, login_token
from models.features import FEATURE_COLUMNS
from models.governance import list_versions
from monitoring.drift import summarize
from monitoring.summary import loop_summary
from pipeline.route import FINAL_FOR_ROUTE
from simulation.faults import inject_malformed
from simulation.reviewers import review_pending
from simulation.world import SimulationConfig, WorldFiles, simulate, write_world

DROP_PREFIX = "demo-"  # the demo's files in the landing folders (a fresh demo removes them)
CHARGEBACK_REASON = "10.4 other fraud, card absent"  # the card scheme's reason code and text
PROMOTION_EVENTS = ("promotion", "promotion_rejected")  # `models.promotion.promote`
PAID = (FINAL_FOR_ROUTE[Route.AUTO_ALLOW], OUTCOMES["approve"])  # final decisions that pay


@dataclass(frozen=True)
class DemoConfig:
    customers: int = 1500
    terminals: int = 3000
    history_days: int = 35  # simulated days before live scoring: training window + label delay
    live_days: int = 3
    batches_per_day: int = 2  # each one a score-intake and a sync-reviews run
    reviewer_error_rate: float = 0.05
    review_lag_minutes: int = 20  # how long after a batch the reviewers' answers are synced
    drift: float = 0.5  # injected from the second live day on, so the drift report has a story
    malformed_per_batch: int = 1
    seed: int = 7
    # high-impact cases need a second sign-off by another Label Studio user than the first
    second_reviewer: str = "second-reviewer@fraudloop.local"
    run_timeout_seconds: float = 900.0  # a triggered run not done by then fails the demo


def run_demo(
    config: DemoConfig, fresh: bool = True, say: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Start Label Studio, the Prefect server and the deployments as `fraudloop up` does (left
    running for the user to look at), then drive the simulated days through them; `say` is
    told each step. Returns the summary."""
    settings = get_settings()
    runner_up = scheduler.runner_service(settings).running() is not None
    if fresh and not runner_up:  # nothing serves the deployments: no run uses the state
        reset_state(settings)
    scheduler.start_server(settings)  # the first model's training reports to it
    say(f"Prefect server: {scheduler.ui_url(settings.prefect_api_url)}")
    with ThreadPoolExecutor(2) as pool, scheduler.reporting_to(settings.prefect_api_url):
        labelstudio = pool.submit(server.start_configured, settings)  # its first start: a minute
        deployments = pool.submit(scheduler.start_scheduler, settings, False)
        if fresh and runner_up:  # an earlier `up`'s: its runs end (paused) before the state goes
            deployments.result()
            reset_state(settings)
        rt = runtime(settings)
        world, live_start = write_simulated_world(rt, config)
        say(f"simulated world: {world.transactions}; training the first model")
        train_flow(world.transactions, world.chargebacks, live_start)
        labelstudio.result()
        say(f"deployments served, schedules paused: {len(deployments.result().deployments)}")
    with scheduler.reporting_to(settings.prefect_api_url):
        return live_days(rt, config, world, live_start, fresh, say)


def reset_state(settings: Settings) -> None:
    """Forget earlier runs: the store, registry, reports, data and the demo's landed files.
    Label Studio's data dir stays (its first start migrates for a minute), and so does the
    Prefect server's (it is running, with the runs of earlier demos to look at)."""
    home = settings.home
    for name in ("fraudloop.db", "mlflow.db", "mlartifacts", "reports", "data"):
        target = home / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    for folder in (settings.transactions_landing, settings.chargebacks_landing):
        for landed in folder.glob(f"{DROP_PREFIX}*"):
            landed.unlink()


def write_simulated_world(rt: Runtime, config: DemoConfig) -> tuple[WorldFiles, datetime]:
    """The simulated world on disk; returns it and when live scoring starts."""
    cfg = SimulationConfig(
        n_customers=config.customers,
        n_terminals=config.terminals,
        days=config.history_days + config.live_days,
        seed=config.seed,
        drift=config.drift,
        drift_start_day=config.history_days + 1,
    )
    delay = rt.policy.learning.chargeback_delay_days
    files = write_world(simulate(cfg), rt.settings.home / "data", delay)
    return files, cfg.start + timedelta(days=config.history_days)


def land(folder: Path, name: str, arrived: datetime, write: Callable[[Path], object]) -> Path:
    """Drop a file as a producer should (written aside, renamed into place), stamped with the
    simulated time it arrived: the intake takes it as settled, and in the order of the days."""
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{DROP_PREFIX}{name}.part"
    write(part)
    stamp = arrived.replace(tzinfo=UTC).timestamp()  # naive UTC, as the store keeps times
    os.utime(part, (stamp, stamp))
    return part.rename(folder / f"{DROP_PREFIX}{name}")


def drop_transactions(
    rt: Runtime, source: Path, start: datetime, end: datetime, faults: int
) -> Path:
    """The window as the payment system's JSONL file, a few malformed records in it."""
    records = inject_malformed(read_window(source, start, end), faults, seed=int(start.timestamp()))
    return land(
        rt.settings.transactions_landing,
        f"{start:%Y%m%dT%H%M}.jsonl",
        end,
        lambda path: write_jsonl(records, path),
    )


def drop_chargebacks(rt: Runtime, source: Path, start: datetime, end: datetime) -> int:
    """Cardholders dispute the frauds of [start, end) that were paid (auto-allowed, or approved
    by a reviewer): the chargebacks file of the day; returns how many it holds."""
    world = pd.read_parquet(
        source,
        columns=["transaction_id", "is_fraud"],
        filters=[
            ("tx_datetime", ">=", pd.Timestamp(start)),
            ("tx_datetime", "<", pd.Timestamp(end)),
        ],
    )
    frauds = world.loc[world["is_fraud"] == 1, "transaction_id"].astype(str).tolist()
    with open_session(rt.db_url) as s:
        paid = sorted(
            s.scalars(
                select(Decision.transaction_id).where(
                    Decision.transaction_id.in_(frauds), Decision.final_decision.in_(PAID)
                )
            )
        )
    rows = pd.DataFrame({"transaction_id": paid, "date": f"{end:%Y-%m-%d}"})
    rows["reason"] = CHARGEBACK_REASON
    land(
        rt.settings.chargebacks_landing,
        f"{start:%Y%m%d}.csv",
        end,
        lambda path: rows.to_csv(path, index=False),
    )
    return len(paid)


def case_truth(source: Path) -> dict[str, int]:
    """What the simulated reviewers know: each review case's ground truth, by case id."""
    frame = pd.read_parquet(source, columns=["transaction_id", "is_fraud"])
    return {
        f"{tx}:{queue}": int(fraud)
        for tx, fraud in zip(frame["transaction_id"], frame["is_fraud"], strict=True)
        for queue in QUEUES
    }


def reviewers_work(
    rt: Runtime, truth: dict[str, int], error_rate: float, seed: int, second_token: str
) -> int:
    """Simulated analysts work every queue through the Label Studio API; second sign-offs are
    given by another user, as fraudloop requires."""
    client = rt.labelstudio()
    second = connect(rt.settings.labelstudio_url, second_token)
    rng = random.Random(seed)
    return sum(
        review_pending(
            second if queue == SIGNOFF_QUEUE else client, pid, truth, error_rate, rng, limit=1000
        )
        for queue, pid in rt.projects(client).items()
    )


def demo_reviewers(rt: Runtime, second: str, now: datetime) -> str:
    """Register the simulated analysts as `fraudloop reviewers add` does; returns the second
    reviewer's API token.

    The account the API token logs in as works Tier 1 and Tier 2, so it is a senior; the second
    reviewer (created on first use) gives the sign-offs. Unregistered users' answers never count.
    """
    s = rt.settings
    client = rt.labelstudio()
    operator = server.check_token(s.labelstudio_url, s.labelstudio_token)
    with open_session(rt.db_url) as session, session.begin():
        add_reviewer(session, client, operator, "senior", s.labelstudio_password, "demo", now)
        add_reviewer(session, client, second, "reviewer", s.labelstudio_password, "demo", now)
    return login_token(s.labelstudio_url, second, s.labelstudio_password)


def trigger(
    api_url: str, deployment: str, timeout: float, say: Callable[[str], None], **at: datetime
) -> None:
    """Run a deployment at the simulated time and wait; the demo stops unless it completed."""
    ran = scheduler.run(api_url, deployment, timeout, dict(at))
    if not ran.completed:
        raise FraudloopError(
            f"demo: the {deployment} run {ran.name} ended {ran.state}; its logs are in the "
            f"Prefect UI, {scheduler.ui_url(api_url)}"
        )
    when = ", ".join(f"{k} {v:%Y-%m-%d %H:%M}" for k, v in at.items())
    say(f"{deployment} ({when}): flow run {ran.name} {ran.state}")


def trained_models(settings: Settings) -> list[dict[str, Any]]:
    """Each version the loop registered, oldest first: promoted or not (the audit trail) and
    what it learnt from (the registry's lineage tags)."""
    with open_session(settings.database_url) as s:
        outcomes = s.execute(
            select(AuditEvent.model_version, AuditEvent.event_type)
            .where(AuditEvent.event_type.in_(PROMOTION_EVENTS))
            .order_by(AuditEvent.seq)
        ).all()
    lineage = {v.version: v for v in list_versions(settings.model_name, settings.tracking_uri)}
    trained = []
    for version, kind in outcomes:
        made = lineage[int(str(version))]
        trained.append(
            {
                "version": made.version,
                "promoted": kind == "promotion",
                "label_counts": made.label_counts,
                "reviewed_labels_in_training": int(
                    made.window.get("reviewed_labels_in_training", 0)
                ),
            }
        )
    return trained


def written_reports(reports: Path, as_of: datetime) -> dict[str, Any]:
    """What the QA-report run wrote for `as_of`, found by the date in the file names: the QA
    report, the drift report, and how many features drifted (Evidently's verdicts, from the
    JSON it saved)."""
    day = f"{as_of:%Y-%m-%d}"
    qa = sorted(reports.glob(f"*qa*{day}.html"))
    html, verdicts = reports / f"drift-{day}.html", reports / f"drift-{day}.json"
    drifted = "n/a"
    if verdicts.is_file():
        found = summarize(
            json.loads(verdicts.read_text()), FEATURE_COLUMNS, "score", html, verdicts
        )
        drifted = f"{found.n_drifted}/{found.n_columns}"
    return {
        "report": qa[0] if qa else None,
        "drift_html": html if html.is_file() else None,
        "drifted": drifted,
    }


def live_days(  # noqa: PLR0913 - the run's parts, each from `run_demo`
    rt: Runtime,
    config: DemoConfig,
    world: WorldFiles,
    live_start: datetime,
    fresh: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Drop, score, review and sync batch by batch, chargebacks each night, then retrain and
    report: each step a triggered deployment run. Returns the summary."""
    settings = rt.settings
    if fresh:
        delete_projects(rt.labelstudio(), settings.labelstudio_project_prefix)
    api, wait = settings.prefect_api_url, config.run_timeout_seconds
    source = world.transactions
    truth = case_truth(source)
    second = demo_reviewers(rt, config.second_reviewer, live_start)
    step = timedelta(days=1) / config.batches_per_day
    lag = timedelta(minutes=config.review_lag_minutes)
    for day in range(config.live_days):
        day_start = live_start + timedelta(days=day)
        for b in range(config.batches_per_day):
            start = day_start + b * step
            drop_transactions(rt, source, start, start + step, config.malformed_per_batch)
            trigger(api, "score-intake", wait, say, now=start + step)
            answered = reviewers_work(
                rt, truth, config.reviewer_error_rate, config.seed + day * 100 + b, second
            )
            say(f"reviewers answered {answered} case(s) in Label Studio")
            trigger(api, "sync-reviews", wait, say, now=start + step + lag)
        day_end = day_start + timedelta(days=1)
        disputed = drop_chargebacks(rt, source, day_start, day_end)
        say(f"day {day + 1}: {disputed} chargeback(s) landed")
        trigger(api, "chargeback-intake", wait, say, now=day_end)
    end = live_start + timedelta(days=config.live_days)
    # the sign-offs and Tier 2 cases the last sync opened: delivered, answered, applied
    trigger(api, "sync-reviews", wait, say, now=end + 2 * lag)
    reviewers_work(rt, truth, config.reviewer_error_rate, config.seed + 9000, second)
    trigger(api, "sync-reviews", wait, say, now=end + 3 * lag)
    trigger(api, "retrain", wait, say, as_of=end)
    trigger(api, "qa-report", wait, say, as_of=end)
    trained = trained_models(settings)
    with open_session(rt.db_url) as s:
        summary = loop_summary(s, settings, trained, written_reports(settings.reports_dir, end))
    summary["where"]["Prefect UI"] = (
        f"{scheduler.ui_url(api)}  (the demo's runs; its schedules stay paused, the days "
        "being simulated: `uv run fraudloop up` resumes them)"
    )
    return {**summary, "trained": trained}
