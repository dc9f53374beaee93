"""Embedded default data: a seeded card-transaction simulator and the handbook data loader.

Modelled on the generator of the *Reproducible Machine Learning for Credit Card Fraud
Detection* handbook (customers spend at terminals within a radius; three fraud scenarios), so
the same features and benchmarks apply to both. Ground truth (`is_fraud`, `fraud_scenario`) is
returned beside the contract columns; it is never a feature and never sent to scoring.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from fraudloop.schema import TRANSACTION_COLUMNS

SECONDS_PER_DAY = 86_400
EMAIL_DOMAINS = np.array(["example.com", "example.org", "example.net", "mail.test"])
CONTRACT_COLUMNS = TRANSACTION_COLUMNS  # the simulator writes exactly what the door accepts
TRUTH_COLUMNS = ["is_fraud", "fraud_scenario"]
HANDBOOK_RENAMES = {
    "TRANSACTION_ID": "transaction_id",
    "TX_DATETIME": "tx_datetime",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "amount",
    "TX_FRAUD": "is_fraud",
    "TX_FRAUD_SCENARIO": "fraud_scenario",
}


@dataclass(frozen=True)
class SimulationConfig:
    """World and fraud-mix parameters; defaults follow the handbook's generator.

    `drift` scales legitimate spending (amount x (1 + drift)) and the number of compromised
    terminals and customers per day (x (1 + drift)) from `drift_start_day` on, so monitoring
    and retraining can be exercised against a known change; `spending_drift` scales legitimate
    spending alone (x (1 + spending_drift)) from the same day. `card_testing_per_day` adds, from
    the same day on, a fraud pattern the history never showed: that many cards a day each make
    a burst of small payments within an hour (scenario 4), as stolen cards are tested.
    """

    n_customers: int = 5_000
    n_terminals: int = 10_000
    start: datetime = datetime(2018, 4, 1)
    days: int = 30
    seed: int = 7
    drift: float = 0.0
    drift_start_day: int = 0
    spending_drift: float = 0.0
    radius: float = 5.0
    amount_fraud_threshold: float = 220.0
    compromised_terminals_per_day: int = 2
    terminal_compromise_days: int = 28
    compromised_customers_per_day: int = 3
    customer_compromise_days: int = 14
    customer_fraud_share: float = 1 / 3
    customer_fraud_amount_factor: float = 5.0
    card_testing_per_day: int = 0
    card_testing_burst: int = 6  # payments per tested card, minutes apart
    card_testing_amounts: tuple[float, float] = (0.5, 3.0)
    home_ip_share: float = 0.9
    roaming_ip_pool: int = 4_096


def simulate(cfg: SimulationConfig) -> pd.DataFrame:
    """Transactions sorted by time, with contract columns plus `is_fraud` and `fraud_scenario`."""
    rng = np.random.default_rng(cfg.seed)
    customers = _customer_profiles(cfg.n_customers, rng)
    terminal_xy = rng.uniform(0, 100, size=(cfg.n_terminals, 2))
    reach = _reachable_terminals(customers["xy"], terminal_xy, cfg.radius)
    tx = _draw_transactions(cfg, customers, reach, rng)
    tx = _add_frauds(cfg, tx, rng)
    if cfg.card_testing_per_day:  # its own draws: a world without it stays the same world
        tx = _add_card_testing(cfg, tx, reach, np.random.default_rng([cfg.seed, 4]))
    return _to_frame(cfg, tx, rng)


def _customer_profiles(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    mean_amount = rng.uniform(5, 100, size=n)
    return {
        "xy": rng.uniform(0, 100, size=(n, 2)),
        "mean_amount": mean_amount,
        "std_amount": mean_amount / 2,
        "tx_per_day": rng.uniform(0, 4, size=n),
    }


@dataclass(frozen=True)
class _Reach:
    """CSR lists of the terminals within reach of each customer."""

    offsets: np.ndarray
    terminals: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def draw(self, customers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One terminal within reach per payment, uniformly."""
        pick = np.floor(rng.uniform(size=len(customers)) * self.counts[customers]).astype(int)
        return self.terminals[self.offsets[customers] + pick]


def _reachable_terminals(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float, chunk: int = 500
) -> _Reach:
    """CSR lists of the terminals within `radius` of each customer (chunked to bound memory)."""
    counts, indices = [], []
    for lo in range(0, len(customer_xy), chunk):
        block = customer_xy[lo : lo + chunk]
        dx = block[:, 0, None] - terminal_xy[None, :, 0]
        dy = block[:, 1, None] - terminal_xy[None, :, 1]
        rows, cols = np.nonzero(dx * dx + dy * dy < radius**2)
        counts.append(np.bincount(rows, minlength=len(block)))
        indices.append(cols)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return _Reach(offsets, np.concatenate(indices))


def _draw_transactions(
    cfg: SimulationConfig,
    customers: dict[str, np.ndarray],
    reach: _Reach,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    n_tx = rng.poisson(np.repeat(customers["tx_per_day"][:, None], cfg.days, axis=1))
    customer = np.repeat(np.repeat(np.arange(cfg.n_customers), cfg.days), n_tx.ravel())
    day = np.repeat(np.tile(np.arange(cfg.days), cfg.n_customers), n_tx.ravel())
    seconds = np.rint(rng.normal(SECONDS_PER_DAY / 2, 20_000, size=len(customer))).astype(int)
    n_reachable = reach.counts[customer]
    keep = (seconds > 0) & (seconds < SECONDS_PER_DAY) & (n_reachable > 0)
    customer, day, seconds, n_reachable = (
        customer[keep],
        day[keep],
        seconds[keep],
        n_reachable[keep],
    )

    mean, std = customers["mean_amount"][customer], customers["std_amount"][customer]
    amount: np.ndarray = rng.normal(mean, std)
    amount = np.where(amount < 0, rng.uniform(0, 2 * mean), amount)
    drifted = day >= cfg.drift_start_day
    scale = (1 + cfg.drift) * (1 + cfg.spending_drift)
    amount = np.round(np.where(drifted, amount * scale, amount), 2)
    terminal = reach.draw(customer, rng)
    return {
        "customer": customer,
        "terminal": terminal,
        "day": day,
        "seconds": seconds,
        "amount": amount,
    }


def _compromised(
    n_entities: int, cfg: SimulationConfig, per_day: int, duration: int, rng: np.random.Generator
) -> np.ndarray:
    """Boolean (entity, day) grid: True while an entity compromised on some day is still bad."""
    delta = np.zeros((n_entities, cfg.days + duration + 1), dtype=int)
    for day in range(cfg.days):
        scale = 1 + cfg.drift if day >= cfg.drift_start_day else 1.0
        picked = rng.choice(n_entities, size=min(n_entities, round(per_day * scale)), replace=False)
        delta[picked, day] += 1  # picked ids are distinct, so plain fancy indexing adds once each
        delta[picked, day + duration] -= 1
    return np.cumsum(delta, axis=1)[:, : cfg.days] > 0


def _add_frauds(
    cfg: SimulationConfig, tx: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Scenarios applied in the handbook's order; a later scenario overrides an earlier one."""
    scenario = np.where(tx["amount"] > cfg.amount_fraud_threshold, 1, 0)
    bad_terminals = _compromised(
        cfg.n_terminals, cfg, cfg.compromised_terminals_per_day, cfg.terminal_compromise_days, rng
    )
    scenario = np.where(bad_terminals[tx["terminal"], tx["day"]], 2, scenario)
    bad_customers = _compromised(
        cfg.n_customers, cfg, cfg.compromised_customers_per_day, cfg.customer_compromise_days, rng
    )
    hit = bad_customers[tx["customer"], tx["day"]] & (
        rng.uniform(size=len(scenario)) < cfg.customer_fraud_share
    )
    amount = np.where(
        hit, np.round(tx["amount"] * cfg.customer_fraud_amount_factor, 2), tx["amount"]
    )
    return {**tx, "amount": amount, "scenario": np.where(hit, 3, scenario)}


def _add_card_testing(
    cfg: SimulationConfig,
    tx: dict[str, np.ndarray],
    reach: _Reach,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """From `drift_start_day`, `card_testing_per_day` cards a day each make a burst of
    `card_testing_burst` small payments 2-10 minutes apart at terminals within reach."""
    days = np.arange(cfg.drift_start_day, cfg.days)
    with_terminals = np.flatnonzero(reach.counts > 0)
    per_day, burst = cfg.card_testing_per_day, cfg.card_testing_burst
    cards = np.concatenate(
        [rng.choice(with_terminals, size=per_day, replace=False) for _ in days]
    ).repeat(burst)
    day = days.repeat(per_day * burst)
    first = rng.integers(3_600, SECONDS_PER_DAY - 2 * 3_600, size=len(days) * per_day)
    gaps = rng.integers(120, 600, size=(len(first), burst)).cumsum(axis=1) - 120
    seconds = (first[:, None] + gaps).ravel()
    low, high = cfg.card_testing_amounts
    new = {
        "customer": cards,
        "terminal": reach.draw(cards, rng),
        "day": day,
        "seconds": seconds,
        "amount": np.round(rng.uniform(low, high, size=len(cards)), 2),
        "scenario": np.full(len(cards), 4),
    }
    return {key: np.concatenate([tx[key], new[key]]) for key in tx}


def _to_frame(
    cfg: SimulationConfig, tx: dict[str, np.ndarray], rng: np.random.Generator
) -> pd.DataFrame:
    """Sensitive fields per customer (card, email, home IP), ids, and time order."""
    n = cfg.n_customers
    cards = luhn_complete(np.concatenate([np.full((n, 1), 4), rng.integers(0, 10, (n, 14))], 1))
    domains = EMAIL_DOMAINS[rng.integers(0, len(EMAIL_DOMAINS), n)]
    emails = np.array([f"user{i}@{d}" for i, d in enumerate(domains)], dtype=object)
    home_ip = random_ipv4(n, rng)
    roaming_ip = random_ipv4(cfg.roaming_ip_pool, rng)
    n_tx = len(tx["customer"])
    ip = np.where(
        rng.uniform(size=n_tx) < cfg.home_ip_share,
        home_ip[tx["customer"]],
        roaming_ip[rng.integers(0, cfg.roaming_ip_pool, n_tx)],
    )
    seconds = tx["day"].astype(np.int64) * SECONDS_PER_DAY + tx["seconds"]
    order = np.lexsort((tx["customer"], seconds))
    c = tx["customer"][order]
    customer_ids = np.array([f"C{i:06d}" for i in range(n)], dtype=object)
    terminal_ids = np.array([f"T{i:06d}" for i in range(cfg.n_terminals)], dtype=object)
    frame = pd.DataFrame(
        {
            "transaction_id": [f"tx{i:09d}" for i in range(len(order))],
            "tx_datetime": pd.Timestamp(cfg.start) + pd.to_timedelta(seconds[order], unit="s"),
            "customer_id": customer_ids[c],
            "terminal_id": terminal_ids[tx["terminal"][order]],
            "amount": tx["amount"][order],
            "card_number": cards[c],
            "email": emails[c],
            "ip_address": ip[order],
            "is_fraud": (tx["scenario"][order] > 0).astype(int),
            "fraud_scenario": tx["scenario"][order].astype(int),
        }
    )
    return frame


def luhn_complete(digits: np.ndarray) -> np.ndarray:
    """Card numbers (str) from rows of payload digits plus the Luhn check digit."""
    doubled = digits[:, ::-1][:, ::2] * 2
    total = (doubled // 10 + doubled % 10).sum(axis=1) + digits[:, ::-1][:, 1::2].sum(axis=1)
    full = np.concatenate([digits, ((10 - total % 10) % 10)[:, None]], axis=1)
    return np.array(["".join(map(str, row)) for row in full], dtype=object)


def random_ipv4(n: int, rng: np.random.Generator) -> np.ndarray:
    """Public-looking IPv4 strings (first octet 11..223 skips 0/8, 10/8 and multicast)."""
    octets = np.column_stack([rng.integers(11, 224, n), rng.integers(0, 256, (n, 3))]).astype(str)
    return np.array([".".join(row) for row in octets], dtype=object)


def chargeback_labels(tx: pd.DataFrame, delay_days: int) -> pd.DataFrame:
    """Label events as the delayed feedback channel delivers them.

    Real chargebacks only exist for frauds. A legitimate transaction is taken as "known legit"
    once the same delay has passed without a chargeback, so it also gets an event (is_fraud=0)
    at `tx_datetime + delay`: training and features then apply one rule to both classes, "use
    what is known by then", and never treat an unlabeled recent transaction as legit.
    """
    return review_labels(tx, "chargeback", timedelta(days=delay_days))


def review_labels(
    tx: pd.DataFrame, source: str = "review", after: timedelta = timedelta(hours=1)
) -> pd.DataFrame:
    """Label events for the payments `tx` as a reviewer answers them: the truth, `after` the
    payment (`chargeback_labels` too, a delay later)."""
    return pd.DataFrame(
        {
            "transaction_id": tx["transaction_id"].astype(str).to_numpy(),
            "is_fraud": tx["is_fraud"].astype(int).to_numpy(),
            "known_at": (tx["tx_datetime"] + after).to_numpy(),
            "source": source,
        }
    )


def load_handbook(path: Path | str) -> pd.DataFrame:
    """The shared handbook parquet in contract columns; it has no sensitive fields (None)."""
    raw = pd.read_parquet(path, columns=list(HANDBOOK_RENAMES))
    frame = raw.rename(columns=HANDBOOK_RENAMES)
    for col in ("transaction_id", "customer_id", "terminal_id"):
        frame[col] = frame[col].astype(str).astype(object)
    for col in ("card_number", "email", "ip_address"):
        frame[col] = None
    frame = frame.astype({"is_fraud": int, "fraud_scenario": int, "amount": float})
    frame["tx_datetime"] = frame["tx_datetime"].astype("datetime64[ns]")
    return frame[CONTRACT_COLUMNS + TRUTH_COLUMNS]


@dataclass(frozen=True)
class WorldFiles:
    """A simulated world on disk: the transaction source (ground truth kept for the simulated
    reviewers) and the chargeback feed the product reads, as a real one would arrive."""

    transactions: Path
    chargebacks: Path


def write_world(world: pd.DataFrame, data_dir: Path, delay_days: int) -> WorldFiles:
    data_dir.mkdir(parents=True, exist_ok=True)
    files = WorldFiles(data_dir / "world.parquet", data_dir / "chargebacks.parquet")
    world.to_parquet(files.transactions, index=False)
    chargeback_labels(world, delay_days).to_parquet(files.chargebacks, index=False)
    return files
