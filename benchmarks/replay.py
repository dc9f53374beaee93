"""The active-learning loop replayed day by day on labelled history, one arm per strategy.

Each arm runs the product's own parts: features from `models.features` (a reviewer's label
enters them the moment it is given), picks from `pipeline.selection`, the training set, fit and
holdout of `models.challenger`, the promotion rule `models.registry.wins`. Per day the arm's
champion scores the day; the strategy picks `budget` cards (customers, each by its riskiest
payment of the day) among those not yet blocked; a simulated reviewer returns the labels of
each picked card's payments of the day (each wrong with `reviewer_error`); a card found
compromised is blocked and leaves the candidates; every payment's label arrives as a chargeback
`delay_days` after it; after the day a challenger is trained on what the arm knows and the rule
decides. The registry is not called: a version per arm and day would cost more than the fit.

CP@100 is the day's share of compromised cards among the picks; its ceiling the share the day
could offer (compromised cards not yet blocked / budget, at most 1). Where the data names its
fraud scenarios (the handbook's generator, the simulator), `chargeback_ceiling` leaves out the
cards whose every fraud of the day is at a terminal compromised for less than the chargeback
delay: nothing but a label on one of that terminal's payments tells it from any other, so it
is the most a perfect ranking of what the chargebacks tell could reach.
"""

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from fraudloop.errors import FraudloopError
from fraudloop.policy import EXPLORATION, ActiveLearning, Learning, Route, Strategy
from models.challenger import Challenger, fit_on_frame, holdout_metrics
from models.config import ModelConfig
from models.features import chronological_order, compute_features
from models.registry import wins
from models.train import FraudModel
from models.training_set import TrainingFrame, current_labels
from monitoring.exploration import weighted_rate
from pipeline.selection import PICK_COLUMNS, select_reviews
from simulation.world import chargeback_labels

STATIC, DELAYED, RANDOM, DEFAULT = "static", "delayed", "random", "default"
# arm variants: `<strategy>@matured` (`Arm.matured`), `<strategy>@training` (`Arm.review_features`)
MATURED, TRAINING = "matured", "training"
VARIANTS = (MATURED, TRAINING)
BASELINES = (STATIC, DELAYED, RANDOM)
REVIEW_SOURCE = "active_learning"
CONFIDENCE = 0.95
ONE_DAY = timedelta(days=1)
TERMINAL_SCENARIO = 2  # the handbook's compromised terminals: any card paying there is robbed


@dataclass(frozen=True)
class Arm:
    """One loop of the replay: how it picks, whether it retrains, whether reviews feed it."""

    name: str
    selection: ActiveLearning | None  # None: picks at random
    retrain: bool = True
    feedback: bool = True  # reviewer labels enter the features and the training set
    # train on matured rows only (older than the chargeback delay, every one labelled): the
    # reviews then reach the model through the features alone, never as a training set whose
    # recent days hold nothing but the picks (`<strategy>@matured`)
    matured: bool = False
    # the reviews feed the training set only; the features know the chargebacks alone, as the
    # baselines' do (`<strategy>@training`)
    review_features: bool = True

    @property
    def plain_features(self) -> bool:
        """Features from chargebacks alone: the same for every such arm."""
        return not (self.feedback and self.review_features)


@dataclass(frozen=True)
class ReplayConfig:
    start: datetime
    days: int
    budget: int = 100
    delay_days: int = 7
    reviewer_error: float = 0.0
    seed: int = 0


def arms(policy_selection: ActiveLearning, strategies: list[str]) -> list[Arm]:
    """The baselines, then one arm per strategy; `default` is the policy's own selection,
    another name the policy's selection with that strategy."""
    top = policy_selection.model_copy(
        update={"strategy": Strategy.TOP_SCORE, "exploration_share": 0.0}
    )
    made = [
        Arm(STATIC, top, retrain=False, feedback=False),
        Arm(DELAYED, top, feedback=False),
        Arm(RANDOM, None),
    ]
    for name in strategies:
        strategy, _, variant = name.partition("@")
        if variant not in ("", *VARIANTS):
            known = ", ".join(f"@{v}" for v in VARIANTS)
            raise FraudloopError(f"strategy {name!r}: the variants are {known}")
        chosen = (
            policy_selection
            if strategy == DEFAULT
            else policy_selection.model_copy(update={"strategy": Strategy(strategy)})
        )
        made.append(
            Arm(name, chosen, matured=variant == MATURED, review_features=variant != TRAINING)
        )
    return made


@dataclass(frozen=True)
class Day:
    """One day's payments in time order, and the truth the replay judges by."""

    start: datetime
    rows: pd.DataFrame
    compromised: frozenset[str]  # customers with a fraud this day
    # the compromised customers with a fraud a chargeback could point to (None: no scenarios)
    revealable: frozenset[str] | None = None


@dataclass
class ArmState:
    """What one arm knows and has done so far."""

    arm: Arm
    model: FraudModel
    features: dict[datetime, pd.DataFrame]  # each day's features, as it was scored
    reviews: list[pd.DataFrame] = field(default_factory=list)
    blocked: dict[str, datetime] = field(default_factory=dict)  # card -> day blocked
    cleared: dict[str, datetime] = field(default_factory=dict)  # card -> day reviewed legit
    daily: list[dict[str, float]] = field(default_factory=list)

    def labels(self, chargebacks: pd.DataFrame) -> pd.DataFrame:
        """`chargebacks` (those of the payments at hand) and, with feedback, the reviews."""
        if not self.arm.feedback or not self.reviews:
            return chargebacks
        return pd.concat([chargebacks, *self.reviews], ignore_index=True)


class Replay:
    """One data set and seed: `run` plays every arm over the same days."""

    def __init__(
        self, tx: pd.DataFrame, cfg: ReplayConfig, model_config: ModelConfig, learning: Learning
    ) -> None:
        self.cfg, self.model_config, self.learning = cfg, model_config, learning
        self.features_cfg = model_config.features
        self.tx = tx.iloc[chronological_order(tx)].reset_index(drop=True)
        self.tx["transaction_id"] = self.tx["transaction_id"].astype(str)
        self.tx["customer_id"] = self.tx["customer_id"].astype(str)
        self.chargebacks = chargeback_labels(self.tx, cfg.delay_days)
        self._times = self.tx["tx_datetime"].to_numpy("datetime64[ns]")
        self._young = young_terminal_frauds(self.tx, cfg.delay_days)
        self._start: tuple[dict[datetime, pd.DataFrame], FraudModel] | None = None

    def _span(self, start: datetime, end: datetime) -> slice:
        """The positions in `tx` (time order) of the payments in [start, end)."""
        lo, hi = np.searchsorted(self._times, [np.datetime64(start), np.datetime64(end)])
        return slice(lo, hi)

    def rows(self, start: datetime, end: datetime) -> pd.DataFrame:
        return self.tx.iloc[self._span(start, end)]

    def chargebacks_of(self, start: datetime, end: datetime) -> pd.DataFrame:
        """The chargeback events of the payments in [start, end) (in `tx`'s order): a day's
        features or a training window need no other, and the whole history's cost seconds."""
        return self.chargebacks.iloc[self._span(start, end)]

    def features(self, start: datetime, labels: pd.DataFrame) -> pd.DataFrame:
        """The features of the day from `start`, as scoring computes them: from the past, with
        the labels known before each payment."""
        history = self.rows(start - timedelta(days=self.features_cfg.history_days), start)
        return compute_features(
            history, self.rows(start, start + ONE_DAY), labels, self.features_cfg
        )

    def day(self, i: int) -> Day:
        start = self.cfg.start + i * ONE_DAY
        span = self._span(start, start + ONE_DAY)
        rows = self.tx.iloc[span]
        fraud = rows["is_fraud"].to_numpy() == 1
        customers = rows["customer_id"].to_numpy()
        revealable = None
        if self._young is not None:
            revealable = frozenset(customers[fraud & ~self._young[span]])
        return Day(start, rows, frozenset(customers[fraud]), revealable)

    def training_frame(
        self,
        features: dict[datetime, pd.DataFrame],
        as_of: datetime,
        labels: pd.DataFrame,
        matured: bool = False,
    ) -> TrainingFrame:
        """The window's rows labelled by `as_of`, with the features they were scored with:
        the ones `build_training_frame` would compute again; `matured`: only the days older
        than the chargeback delay."""
        first = as_of - timedelta(days=self.learning.train_window_days)
        last = as_of - timedelta(days=self.cfg.delay_days) if matured else as_of
        days = [d for d in sorted(features) if first <= d < last]
        X = pd.concat([features[d] for d in days], ignore_index=True)
        ids = np.concatenate([self.rows(d, d + ONE_DAY)["transaction_id"].to_numpy() for d in days])
        verdict = current_labels(labels, as_of)
        position = verdict.index.get_indexer(ids)
        known = position >= 0
        return TrainingFrame(
            X=X[known].reset_index(drop=True),
            y=verdict.to_numpy(int)[position[known]],
            transaction_ids=ids[known].tolist(),
        )

    def challenger(
        self,
        features: dict[datetime, pd.DataFrame],
        as_of: datetime,
        labels: pd.DataFrame,
        matured: bool = False,
    ) -> Challenger:
        frame = self.training_frame(features, as_of, labels, matured)
        window = self.rows(as_of - timedelta(days=self.learning.train_window_days), as_of)
        used = labels[labels["transaction_id"].isin(frame.transaction_ids)]
        return fit_on_frame(
            frame, window, used, as_of, self.learning.holdout_days, self.model_config
        )

    def retrain(self, state: ArmState, as_of: datetime) -> bool:
        """Fit a challenger on what the arm knows at `as_of`; promote it if the rule says so
        (a NaN metric never wins, as in `models.promotion`)."""
        try:
            window = self.chargebacks_of(
                as_of - timedelta(days=self.learning.train_window_days), as_of
            )
            challenger = self.challenger(
                state.features, as_of, state.labels(window), state.arm.matured
            )
        except ValueError:  # a window the trainer refuses (a slice without fraud)
            return False
        metric = self.learning.promotion_metric
        mine = challenger.metrics.get(metric, np.nan)
        theirs = holdout_metrics(
            challenger.split, state.model.predict_proba(challenger.split.holdout.X)
        ).get(metric, np.nan)
        if np.isnan(mine) or np.isnan(theirs):
            return False
        promoted, _ = wins(mine, theirs, self.learning.promotion_min_gain)
        if promoted:
            state.model = challenger.model
        return promoted

    def pick(self, state: ArmState, scored: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """The day's picks among cards not yet blocked, each card by its riskiest payment;
        `customer_id, score, strategy, propensity`, the candidate count in `attrs`."""
        open_cards = scored[~scored["customer_id"].isin(state.blocked)]
        best = open_cards.sort_values("score", ascending=False, kind="stable").drop_duplicates(
            "customer_id"
        )
        cands = pd.DataFrame(
            {
                "transaction_id": best["transaction_id"].to_numpy(),
                "customer_id": best["customer_id"].to_numpy(),
                "score": best["score"].to_numpy(),
                "amount": best["amount"].to_numpy(),
                "route": Route.AUTO_ALLOW.value,
            }
        )
        if state.arm.selection is None:
            rows = rng.choice(len(cands), size=min(self.cfg.budget, len(cands)), replace=False)
            picks = cands.iloc[np.sort(rows)].assign(strategy=RANDOM, propensity=1.0)
        else:
            chosen = select_reviews(
                cands, self.cfg.budget, state.arm.selection, int(rng.integers(2**31))
            )
            picks = chosen[PICK_COLUMNS].merge(
                cands[["transaction_id", "customer_id", "score"]], on="transaction_id"
            )
        picks.attrs["candidates"] = len(cands)
        return picks

    def review(
        self, state: ArmState, day: Day, picks: pd.DataFrame, rng: np.random.Generator
    ) -> set[str]:
        """The reviewer labels every payment of each picked card that day, each label wrong
        with `reviewer_error`, known at the day's end; returns the cards found compromised."""
        rows = day.rows[day.rows["customer_id"].isin(set(picks["customer_id"]))]
        truth = rows["is_fraud"].to_numpy(int)
        said = np.where(rng.random(len(truth)) < self.cfg.reviewer_error, 1 - truth, truth)
        state.reviews.append(
            pd.DataFrame(
                {
                    "transaction_id": rows["transaction_id"].to_numpy(),
                    "is_fraud": said,
                    "known_at": np.datetime64(day.start + ONE_DAY, "ns"),
                    "source": REVIEW_SOURCE,
                }
            )
        )
        return set(rows.loc[said == 1, "customer_id"])

    def step(self, state: ArmState, i: int, day: Day, rng: np.random.Generator) -> None:
        """Score, pick, review, block, record; retrain after the day."""
        if day.start not in state.features:
            past = self.chargebacks_of(
                day.start - timedelta(days=self.features_cfg.history_days), day.start + ONE_DAY
            )
            known = past if state.arm.plain_features else state.labels(past)
            state.features[day.start] = self.features(day.start, known)
        scored = day.rows.assign(score=state.model.predict_proba(state.features[day.start]))
        picks = self.pick(state, scored, rng)
        hits = picks["customer_id"].isin(day.compromised).to_numpy()
        open_compromised = len(day.compromised - state.blocked.keys())
        revealable = chargeback_ceiling(day, state.blocked.keys(), self.cfg.budget)
        week_ago = day.start - timedelta(days=7)
        repeats = sum(state.cleared.get(c, datetime.min) >= week_ago for c in picks["customer_id"])
        found = self.review(state, day, picks, rng)
        state.blocked |= {c: day.start for c in found}
        state.cleared |= {c: day.start for c in set(picks["customer_id"]) - found}
        caught = day.rows["customer_id"].isin(found & day.compromised).to_numpy()
        record = {
            "day": float(i),
            "cp100": float(hits.sum()) / self.cfg.budget,
            "ceiling": min(1.0, open_compromised / self.cfg.budget),
            **revealable,
            "fraud_caught": float(day.rows["is_fraud"].to_numpy()[caught].sum()),
            "reviews": float(len(picks)),
            "repeat_reviews": float(repeats),  # cards reviewed legitimate in the last 7 days
            "blocked": float(len(found)),
            # compromised cards the strategy's own picks left (exploration's finds count here)
            "missed_truth": float(open_compromised - hits[picks["strategy"] != EXPLORATION].sum()),
            **exploration_estimate(picks, hits),
            "promoted": 0.0,
        }
        if state.arm.retrain:
            record["promoted"] = float(self.retrain(state, day.start + ONE_DAY))
        state.daily.append(record)

    def prevented(self, state: ArmState, end: datetime) -> float:
        """Fraud amount on blocked cards after the day they were blocked, until `end`."""
        rows = self.rows(self.cfg.start, end)
        blocked_on = rows["customer_id"].map(state.blocked)
        later = rows["tx_datetime"] >= blocked_on + ONE_DAY
        fraud = rows["is_fraud"].to_numpy() == 1
        return float(rows.loc[later.to_numpy() & fraud, "amount"].sum())

    def window_features(self) -> dict[datetime, pd.DataFrame]:
        """The features of the training window before the replay, the same for every arm."""
        first = self.cfg.start - timedelta(days=self.learning.train_window_days)
        days = (first + k * ONE_DAY for k in range(self.learning.train_window_days))
        history = timedelta(days=self.features_cfg.history_days)
        return {d: self.features(d, self.chargebacks_of(d - history, d + ONE_DAY)) for d in days}

    def initial_model(self, shared: dict[datetime, pd.DataFrame]) -> FraudModel:
        """The champion every arm starts with: trained on what is known at the start."""
        first = self.cfg.start - timedelta(days=self.learning.train_window_days)
        known = self.chargebacks_of(first, self.cfg.start)
        return self.challenger(shared, self.cfg.start, known).model

    def prepare(self) -> None:
        """What every arm starts from: the window's features and the first champion."""
        if self._start is None:
            shared = self.window_features()
            self._start = (shared, self.initial_model(shared))

    def play(
        self,
        arm: Arm,
        features: dict[datetime, pd.DataFrame] | None = None,
        progress: Callable[[str, int], None] = lambda _a, _d: None,
    ) -> pd.DataFrame:
        """One arm over the replay's days: its daily records (`amount_prevented` in `attrs`).
        `features` may be shared by arms without feedback: they know the same labels."""
        self.prepare()
        assert self._start is not None
        shared, initial = self._start
        rng = np.random.default_rng([self.cfg.seed, zlib.crc32(arm.name.encode())])
        state = ArmState(arm, initial, features if features is not None else dict(shared))
        for i in range(self.cfg.days):
            progress(arm.name, i)
            self.step(state, i, self.day(i), rng)
        frame = pd.DataFrame(state.daily)
        end = self.cfg.start + self.cfg.days * ONE_DAY
        frame.attrs["amount_prevented"] = self.prevented(state, end)
        return frame

    def run(
        self, arm_list: list[Arm], progress: Callable[[str, int], None] = lambda _a, _d: None
    ) -> dict[str, pd.DataFrame]:
        """Every arm in this process, one after the other."""
        self.prepare()
        assert self._start is not None
        plain = dict(self._start[0])  # features without reviews: the same for every such arm
        return {
            arm.name: self.play(arm, plain if arm.plain_features else None, progress)
            for arm in arm_list
        }


def run_arms(
    replay: Replay,
    arm_list: list[Arm],
    workers: int,
    finished: Callable[[str], None] = lambda _a: None,
) -> dict[str, pd.DataFrame]:
    """Every arm, `workers` at a time in worker processes (joblib's loky: arms are independent
    and each runs on one core); the same records as `Replay.run`, whose draws are per arm."""
    from joblib import Parallel, delayed

    replay.prepare()  # once, shipped to the workers with the replay
    done: dict[str, pd.DataFrame] = {}
    runs = Parallel(n_jobs=max(workers, 1), return_as="generator_unordered")(
        delayed(_played)(replay, arm) for arm in arm_list
    )
    for name, frame in runs:
        done[name] = frame
        finished(name)
    return {arm.name: done[arm.name] for arm in arm_list}


def _played(replay: Replay, arm: Arm) -> tuple[str, pd.DataFrame]:
    return arm.name, replay.play(arm)


def young_terminal_frauds(tx: pd.DataFrame, delay_days: int) -> np.ndarray | None:
    """Per payment (in `tx`'s time order): a fraud at a compromised terminal whose first such
    fraud is less than `delay_days` old, so no chargeback has named the terminal yet. None
    without `fraud_scenario`."""
    if "fraud_scenario" not in tx:
        return None
    at_terminal = (tx["fraud_scenario"] == TERMINAL_SCENARIO).to_numpy()
    first = tx.loc[at_terminal].groupby("terminal_id")["tx_datetime"].min()
    since = tx["terminal_id"].map(first) + timedelta(days=delay_days)
    return at_terminal & (tx["tx_datetime"] < since).to_numpy()


def chargeback_ceiling(day: Day, blocked: Iterable[str], budget: int) -> dict[str, float]:
    """The day's ceiling counting only the cards a chargeback could point to."""
    if day.revealable is None:
        return {}
    return {"chargeback_ceiling": min(1.0, len(day.revealable - set(blocked)) / budget)}


def exploration_estimate(picks: pd.DataFrame, hits: np.ndarray) -> dict[str, float]:
    """What the day's exploration picks say: a random sample of the candidates with known
    chance (`weekly_misses` pools a week of them)."""
    explored = (picks["strategy"] == EXPLORATION).to_numpy()
    if not explored.any():
        return {}
    return {
        "explored": float(explored.sum()),
        "explored_hits": float(hits[explored].sum()),
        "explore_propensity": float(picks["propensity"].to_numpy()[explored][0]),
        "candidates": float(picks.attrs["candidates"]),
        "strategy_found": float(hits[~explored].sum()),
    }


def weekly_misses(daily: pd.DataFrame) -> list[dict[str, float]]:
    """Per week, the compromised cards the strategy left unpicked: Horvitz-Thompson's total
    over the candidates (from the exploration picks) less what the strategy's picks found,
    with the interval of the weighted rate, against the truth."""
    if "explored" not in daily:
        return []
    out = []
    explored = daily[daily["explored"].fillna(0) > 0]
    for week, days in explored.groupby(explored["day"] // 7):
        if days.empty:
            continue
        hits = np.concatenate(
            [
                np.r_[np.ones(int(h)), np.zeros(int(n - h))]
                for h, n in zip(days["explored_hits"], days["explored"], strict=True)
            ]
        )
        propensity = np.repeat(days["explore_propensity"].to_numpy(), days["explored"].astype(int))
        rate = weighted_rate(hits, propensity, CONFIDENCE)
        population, found = days["candidates"].sum(), days["strategy_found"].sum()
        out.append(
            {
                "week": int(week) + 1,
                "estimate": max((rate.rate or 0.0) * population - found, 0.0),
                "low": max((rate.low or 0.0) * population - found, 0.0),
                "high": max((rate.high or 0.0) * population - found, 0.0),
                "truth": float(days["missed_truth"].sum()),
            }
        )
    return out


@dataclass(frozen=True)
class ReplayData:
    """The payments to replay, and the replay day a simulated drift starts on (if any)."""

    tx: pd.DataFrame
    start: datetime
    drift_day: int | None = None


SIM_KEYS = {  # `sim:key=value,...` -> SimulationConfig field
    "customers": "n_customers",
    "terminals": "n_terminals",
    "days": "days",
    "seed": "seed",
    "drift": "drift",
    "spend": "spending_drift",
    "testing": "card_testing_per_day",
}
SIM_FLOATS = ("drift", "spend")


def simulated(spec: str, days: int, history_days: int) -> ReplayData:
    """`sim:customers=2000,days=90,drift=1.0,spend=-0.3,testing=20,drift_day=14`: a simulated
    world whose replay starts once its history allows (features, training window), drift from
    replay day `drift_day` on: `drift` more compromised terminals and customers and legitimate
    spending shifted, `spend` legitimate spending alone, `testing` that many cards a day tested
    by bursts of small payments (a pattern the history never showed)."""
    from simulation.world import SimulationConfig, simulate

    fields: dict[str, float] = {}
    drift_day = None
    for part in filter(None, spec.removeprefix("sim:").split(",")):
        key, _, value = part.partition("=")
        if key == "drift_day":
            drift_day = int(value)
        elif key in SIM_KEYS:
            fields[SIM_KEYS[key]] = float(value) if key in SIM_FLOATS else int(value)
        else:
            known = ", ".join([*SIM_KEYS, "drift_day"])
            raise FraudloopError(f"--data {spec}: unknown key {key!r}; keys: {known}")
    lead = history_days
    sim_days = int(fields.pop("days", lead + days))
    if sim_days < lead + days:
        raise FraudloopError(
            f"--data {spec}: days={sim_days} is too short: the replay needs {lead} days of "
            f"history before its {days} days"
        )
    start_day = sim_days - days
    cfg = SimulationConfig(
        days=sim_days,
        drift_start_day=start_day + (drift_day or 0),
        **fields,  # type: ignore[arg-type]
    )
    if drift_day is None and {"drift", "spending_drift", "card_testing_per_day"} & set(fields):
        drift_day = 0
    tx = simulate(cfg)
    return ReplayData(tx, cfg.start + timedelta(days=start_day), drift_day)
