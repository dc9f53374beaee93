"""The whole loop over a few simulated days: the embedded default a new user runs first.

A simulated world (`simulation.world`) stands in for the card network, the chargeback feed and
the reviewers; everything else is the real thing: Label Studio, the MLflow registry, Prefect
flow runs, the decision store. Reviewers answer through Label Studio's API as a person would.
"""

import random
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.chargebacks import chargeback_flow
from flows.monitor import monitor_flow
from flows.retrain import retrain_flow
from flows.runtime import Runtime, runtime
from flows.score import score_flow
from flows.sync import sync_flow
from flows.train import train_flow
from fraudloop.feed import read_window, write_jsonl
from fraudloop.policy import QUEUES, SIGNOFF_QUEUE
from fraudloop.settings import get_settings
from fraudloop.storage import open_session
from labeling import server
from labeling.client import connect
from labeling.projects import delete_projects
from labeling.reviewers import add_reviewer, login_token
from monitoring.summary import loop_summary
from simulation.faults import inject_malformed
from simulation.reviewers import review_pending
from simulation.world import SimulationConfig, WorldFiles, simulate, write_world


@dataclass(frozen=True)
class DemoConfig:
    customers: int = 1500
    terminals: int = 3000
    history_days: int = 35  # simulated days before live scoring: training window + label delay
    live_days: int = 3
    batches_per_day: int = 4
    reviewer_error_rate: float = 0.05
    review_lag_minutes: int = 20  # how long after a batch the reviewers' answers are synced
    drift: float = 0.5  # injected from the second live day on, so the drift report has a story
    malformed_per_batch: int = 1
    seed: int = 7
    # high-impact cases need a second sign-off by another Label Studio user than the first
    second_reviewer: str = "second-reviewer@fraudloop.local"


@task(cache_policy=NO_CACHE)
def prepare(rt: Runtime, config: DemoConfig, fresh: bool) -> tuple[WorldFiles, datetime]:
    """Start Label Studio, reset state if asked, and write the simulated world."""
    s = rt.settings
    server.start_configured(s)
    if fresh:
        delete_projects(rt.labelstudio(), s.labelstudio_project_prefix)
    cfg = SimulationConfig(
        n_customers=config.customers,
        n_terminals=config.terminals,
        days=config.history_days + config.live_days,
        seed=config.seed,
        drift=config.drift,
        drift_start_day=config.history_days + 1,
    )
    files = write_world(simulate(cfg), s.home / "data", rt.policy.learning.chargeback_delay_days)
    return files, cfg.start + timedelta(days=config.history_days)


def feed_drop(rt: Runtime, source: Path, start: datetime, end: datetime, faults: int) -> Path:
    """The window as the payment system's JSONL drop, with a few malformed records in it."""
    records = inject_malformed(read_window(source, start, end), faults, seed=int(start.timestamp()))
    return write_jsonl(records, rt.settings.home / "data" / "feed" / f"{start:%Y%m%dT%H%M}.jsonl")


def reset_state(home: Path) -> None:
    """Forget earlier runs; Label Studio's data dir stays (its first start migrates for a minute)."""
    for name in ("fraudloop.db", "mlflow.db", "mlartifacts", "reports", "data"):
        target = home / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def case_truth(source: Path) -> dict[str, int]:
    """What the simulated reviewers know: each review case's ground truth, by case id."""
    frame = pd.read_parquet(source, columns=["transaction_id", "is_fraud"])
    return {
        f"{tx}:{queue}": int(fraud)
        for tx, fraud in zip(frame["transaction_id"], frame["is_fraud"], strict=True)
        for queue in QUEUES
    }


@task(cache_policy=NO_CACHE)
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


@task(cache_policy=NO_CACHE)
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


@flow(name="demo")
def demo_flow(config: DemoConfig, fresh: bool = True) -> dict[str, Any]:
    """Train, then score/review/sync day by day, retrain, monitor; returns the summary."""
    settings = get_settings()
    if fresh:
        reset_state(settings.home)
    rt = runtime(settings)
    log = get_run_logger()
    world, live_start = prepare(rt, config, fresh)
    source = world.transactions
    truth = case_truth(source)
    second = demo_reviewers(rt, config.second_reviewer, live_start)
    step = timedelta(days=1) / config.batches_per_day
    trained = [train_flow(source, world.chargebacks, live_start)]
    last_chargebacks = live_start
    for day in range(config.live_days):
        for b in range(config.batches_per_day):
            start = live_start + day * timedelta(days=1) + b * step
            drop = feed_drop(rt, source, start, start + step, config.malformed_per_batch)
            result = score_flow(drop, start, start + step)
            answered = reviewers_work(
                rt, truth, config.reviewer_error_rate, config.seed + day * 100 + b, second
            )
            sync_flow(start + step + timedelta(minutes=config.review_lag_minutes))
            log.info("day %d batch %d: %s, %d reviewed", day + 1, b + 1, result, answered)
        now = live_start + timedelta(days=day + 1)
        chargeback_flow(world.chargebacks, now, since=last_chargebacks)
        last_chargebacks = now
    end = live_start + timedelta(days=config.live_days)
    for drain in range(2):  # sign-offs and Tier 2 cases opened by the last syncs
        sync_flow(end + timedelta(minutes=config.review_lag_minutes + 5 + 5 * drain))
        reviewers_work(rt, truth, config.reviewer_error_rate, config.seed + 9000 + drain, second)
    sync_flow(end + timedelta(minutes=config.review_lag_minutes + 15))
    trained.append(retrain_flow(end))
    monitoring = monitor_flow(end)
    with open_session(rt.db_url) as s:
        return {**loop_summary(s, settings, trained, monitoring), "trained": trained}
