"""What both benchmarks need: a realistic workload and a registered champion, built untimed."""

import resource
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from fraudloop.process import tune_for_scoring
from models import registry
from models.config import packaged_model_config
from models.scoring import ScoringModel, load_model
from models.train import train_model
from models.training_set import build_training_frame
from simulation.world import SimulationConfig, chargeback_labels, simulate

NAME = "fraud-detector"
TRUTH = ["is_fraud", "fraud_scenario"]


@dataclass(frozen=True)
class World:
    base: pd.DataFrame  # contract columns, time-ordered
    days: int


def make_world(customers: int = 2_000, days: int = 20, seed: int = 7) -> World:
    cfg = SimulationConfig(n_customers=customers, n_terminals=2 * customers, days=days, seed=seed)
    return World(simulate(cfg), days)


def champion(world: World, home: Path) -> ScoringModel:
    """The served model (the packaged model config) registered and loaded back through MLflow."""
    uri = f"sqlite:///{home / 'mlflow.db'}"
    config = packaged_model_config()
    tx = world.base
    as_of = tx["tx_datetime"].max().normalize()
    labels = chargeback_labels(tx, config.features.delay_days)
    frame = build_training_frame(tx, labels, as_of, world.days - 1, config.features)
    model = train_model(frame.X, frame.y, config.training)
    version = registry.log_and_register(
        model,
        frame.X,
        {},
        config.as_params(),
        {"end": str(as_of)},
        tracking_uri=uri,
        model_name=NAME,
        config=config,
    )
    registry.set_alias(NAME, registry.CHAMPION, version, tracking_uri=uri)
    served = load_model(uri, NAME)
    tune_for_scoring()  # as the scoring flow and API workers are
    return served


def workload(world: World, rows: int, chunk: int, run_id: str) -> Iterator[list[dict]]:
    """`rows` transactions in time order, `chunk` at a time: the world replayed epoch after
    epoch (shifted in time, fresh ids), so memory never depends on `rows`."""
    base = world.base.drop(columns=TRUTH)
    made = epoch = 0
    while made < rows:
        shift = timedelta(days=world.days * epoch)
        for start in range(0, len(base), chunk):
            part = base.iloc[start : start + min(chunk, rows - made)]
            part = part.assign(
                transaction_id=f"{run_id}e{epoch}-" + part["transaction_id"],
                tx_datetime=part["tx_datetime"] + shift,
            )
            made += len(part)
            yield part.to_dict("records")
            if made >= rows:
                return
        epoch += 1


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scratch_dir() -> tempfile.TemporaryDirectory:  # type: ignore[type-arg]
    return tempfile.TemporaryDirectory(prefix="fraudloop-bench-")


def free_port() -> int:
    """A loopback port nothing listens on now, for a server the benchmark starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
