"""A scratch store holding what the weekly QA report reads, at the size of a busy week, built
through the product's own write paths so every row is shaped as in production.

Transactions are the simulator's (`simulation.world.simulate`), one world per ~5,000 customers
tiled side by side (own seeds and ids) until the week holds the rows asked for: a single world
of 100,000 customers would compare every customer with every terminal. Scores are drawn per
row from the simulated truth (vectorised: no model, no SHAP); everything else goes through the
product: `pipeline.route.build_decisions` in 5-minute micro-batches and `decisions.save`
(decisions, review cases, one chained audit event each), `pipeline.audit_sample.open_week`
(the post-verify sample), `labeling.review.answers.receive` for every reviewer answer (sign-off,
escalation, Tier 2 and labels as the label sync applies them), `labeling.review.cases.escalate`
where the SLA sweep would have, and `fraudloop.intake.record_chargebacks` for chargebacks.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmarks.common import TRUTH
from fraudloop import audit, decisions
from fraudloop.decisions import DecisionBatch
from fraudloop.intake import record_chargebacks
from fraudloop.labels import CHARGEBACK_ACTOR, add_transactions
from fraudloop.policy import LABEL_ONLY_QUEUES, SIGNOFF_QUEUE, TIER2_QUEUE, Policy
from fraudloop.storage import Decision, ReviewTask, open_session
from labeling.review.answers import Answer, receive
from labeling.review.cases import OPEN, SWEEP_ACTOR, Exit, escalate
from labeling.reviewers import register
from models.explain import confidence, top_reasons
from models.features import DEFAULT_CONFIG, FEATURE_COLUMNS, feature_texts
from monitoring.outcomes import APPROVED
from pipeline.audit_sample import open_week
from pipeline.route import ModelInfo, build_decisions
from simulation.world import SimulationConfig, simulate

CUSTOMERS_PER_WORLD = 5_000
TX_PER_CUSTOMER_WEEK = 13.5  # the simulator's default spending (measured: 134,739 in 5,000 x 14 d)
MICRO_BATCH = "5min"  # the scoring intake decides each landing file as it comes
ANALYSTS = {f"analyst{i}@bank.example": 0.03 for i in range(10)} | {"sloppy@bank.example": 0.15}
SENIORS = {f"senior{i}@bank.example": 0.01 for i in range(3)}
ESCALATE_SHARE = 0.015  # Tier 1 answers that escalate to Tier 2 instead of deciding
LATENCY_MEDIAN = 0.3  # a reviewer answers after this share of the SLA, typically ...
LATENCY_SIGMA = 0.7  # ... lognormally: about 4 % of cases run past it
CHARGEBACK_DAYS = (0.5, 7.0)  # a fraud's chargeback arrives this long after the payment
RISKY_LEGIT = 0.015  # legitimate payments that look risky (scored around 0.7) ...
HIGH_FRAUD = 0.75  # ... and frauds the model scores high
ANSWER_CHUNK = 2_000  # answers applied per audit append, as the label sync does


@dataclass(frozen=True)
class Shape:
    rows: int  # transactions in the reported week
    weeks: int  # weeks stored up to `as_of`, the reported one last
    as_of: datetime
    days: int  # the report's week (`report.weekly_days`)
    seed: int = 11

    @property
    def start(self) -> datetime:
        return self.as_of - timedelta(days=self.days * self.weeks)


@dataclass
class Built:
    """What went into the store, for the benchmark's JSON."""

    counts: dict[str, int] = field(default_factory=dict)
    frauds: set[str] = field(default_factory=set)

    def add(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def worlds(shape: Shape) -> tuple[int, int]:
    """(worlds, customers each) that make about `shape.rows` transactions a week."""
    customers = max(1, round(shape.rows * 7 / shape.days / TX_PER_CUSTOMER_WEEK))
    n = -(-customers // CUSTOMERS_PER_WORLD)
    return n, -(-customers // n)


def world(shape: Shape, k: int, customers: int) -> pd.DataFrame:
    """World `k`: its own seed, and ids of its own so worlds never share a customer."""
    cfg = SimulationConfig(
        n_customers=customers,
        n_terminals=2 * customers,
        start=shape.start,
        days=shape.days * shape.weeks,
        seed=shape.seed + k,
    )
    tx = simulate(cfg)
    for column in ("transaction_id", "customer_id", "terminal_id"):
        tx[column] = f"w{k}-" + tx[column].astype(str)
    return tx


def scores(is_fraud: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A calibrated-looking score per row: most legitimate payments near 0, a few look risky;
    three frauds in four score high, the rest slip under the review band."""
    n = len(is_fraud)
    legit = np.where(rng.random(n) < RISKY_LEGIT, rng.beta(6, 3, n), rng.beta(0.5, 25, n))
    fraud = np.where(rng.random(n) < HIGH_FRAUD, rng.beta(9, 1.2, n), rng.beta(1, 6, n))
    return np.where(is_fraud == 1, fraud, legit)


def scored_frame(tx: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """What `ScoringModel.predict` returns (score, confidence, top-3 reasons), without a
    model: the reasons are the product's words for drawn feature values and contributions."""
    score = scores(tx["is_fraud"].to_numpy(), rng)
    n, k = len(tx), len(FEATURE_COLUMNS)
    values = rng.integers(0, 6, size=(n, k)).astype(float)
    contributions = rng.normal(0, 1, size=(n, k + 1))
    reasons = top_reasons(contributions, values, FEATURE_COLUMNS, feature_texts(DEFAULT_CONFIG))
    return pd.DataFrame(
        {"score": score, "confidence": confidence(score), "reasons": reasons}, index=tx.index
    )


def decide(
    tx: pd.DataFrame, scored: pd.DataFrame, policy: Policy, model: ModelInfo
) -> DecisionBatch:
    """Route `tx` as the intake would: one `build_decisions` per micro-batch, decided at its
    end; the batches of the chunk merged into one save."""
    merged = DecisionBatch()
    for end, part in tx.groupby(
        tx["tx_datetime"].dt.floor(MICRO_BATCH) + pd.Timedelta(MICRO_BATCH)
    ):
        batch = build_decisions(part, scored.loc[part.index], policy, model, end.to_pydatetime())
        merged.decisions += batch.decisions
        merged.reviews += batch.reviews
        merged.events += batch.events
    return merged


def store_decisions(
    url: str,
    shape: Shape,
    policy: Policy,
    model: ModelInfo,
    chunk: int,
    step: Callable[[int], None],
) -> Built:
    """Every world's transactions, decisions, review cases and decision events, `chunk`
    transactions per database transaction; `step(n)` after each chunk."""
    built = Built()
    n_worlds, customers = worlds(shape)
    rng = np.random.default_rng(shape.seed)
    for k in range(n_worlds):
        tx = world(shape, k, customers)
        built.frauds.update(tx.loc[tx["is_fraud"] == 1, "transaction_id"])
        for first in range(0, len(tx), chunk):
            part = tx.iloc[first : first + chunk]
            scored = scored_frame(part, rng)  # the truth scores it, and stays out of the store
            batch = decide(part.drop(columns=TRUTH), scored, policy, model)
            with open_session(url) as s, s.begin():
                add_transactions(s, part)
                decisions.save(s, batch)
            built.add("transactions", len(part))
            built.add(
                "in_reported_week",
                int((part["tx_datetime"] >= shape.as_of - timedelta(days=shape.days)).sum()),
            )
            built.add("review_cases_routed", len(batch.reviews))
            step(len(part))
    return built


def register_reviewers(url: str, when: datetime) -> None:
    with open_session(url) as s, s.begin():
        for i, email in enumerate([*ANALYSTS, *SENIORS]):
            register(s, email, "senior" if email in SENIORS else "reviewer", i + 1, "bench", when)


def audit_samples(url: str, shape: Shape, policy: Policy, built: Built) -> None:
    """The post-verify sample of every stored week that ended before `as_of`, drawn when its
    schedule draws it (`report_cron`: Monday 07:00)."""
    for w in range(1, shape.weeks):
        week_end = shape.start + timedelta(days=shape.days * w)
        with open_session(url) as s, s.begin():
            result = open_week(s, policy, week_end, week_end + timedelta(hours=7))
        built.add("audit_sample_cases", sum(result.opened.values()))


@dataclass
class Reviewing:
    """Who answers what, when, and how well: the simulated review desk."""

    policy: Policy
    as_of: datetime
    frauds: set[str]
    rng: np.random.Generator
    annotation: int = 0
    left_open: set[str] = field(default_factory=set)

    def latency(self, task: ReviewTask) -> timedelta:
        sla = (task.sla_due_at - task.created_at).total_seconds()
        seconds = sla * LATENCY_MEDIAN * float(np.exp(self.rng.normal(0, LATENCY_SIGMA)))
        return timedelta(seconds=seconds)

    def reviewer(self, task: ReviewTask, first: str | None) -> str:
        pool = SENIORS if task.queue == TIER2_QUEUE else ANALYSTS
        names = [r for r in pool if r != first]
        return names[int(self.rng.integers(len(names)))]

    def choice(self, task: ReviewTask, reviewer: str) -> str:
        can_escalate = task.queue not in (*LABEL_ONLY_QUEUES, TIER2_QUEUE, SIGNOFF_QUEUE)
        if can_escalate and self.rng.random() < ESCALATE_SHARE:
            return "escalated"
        fraud = task.transaction_id in self.frauds
        wrong = self.rng.random() < {**ANALYSTS, **SENIORS}[reviewer]
        return "human_reject" if fraud != wrong else "human_approve"


def _open_cases(session: Session, as_of: datetime, skip: set[str]) -> list[ReviewTask]:
    stmt = (
        select(ReviewTask)
        .where(ReviewTask.status.in_(OPEN), ReviewTask.created_at < as_of)
        .order_by(ReviewTask.created_at)
    )
    return [t for t in session.scalars(stmt) if t.case_id not in skip]


def _work(session: Session, task: ReviewTask, desk: Reviewing, built: Built) -> None:
    """One case: answered, escalated by the SLA sweep, or still open at `as_of`."""
    policy = desk.policy
    when = task.created_at + desk.latency(task)
    swept = policy.queues[task.queue].tier == 1 and policy.queues[task.queue].escalate_on_breach
    if swept and when > task.sla_due_at:
        sweep_at = task.sla_due_at + timedelta(minutes=float(desk.rng.uniform(0, 5)))
        if sweep_at >= desk.as_of:
            desk.left_open.add(task.case_id)
            return
        late = (sweep_at - task.sla_due_at).total_seconds() / 60
        reason = f"no decision within the {task.queue} SLA ({late:.0f} min overdue)"
        escalate(session, task, Exit.SLA_BREACH, reason, SWEEP_ACTOR, policy, sweep_at)
        built.add("sla_escalations", 1)
        return
    if when >= desk.as_of:
        desk.left_open.add(task.case_id)
        return
    parent = session.get(ReviewTask, task.parent_case_id) if task.parent_case_id else None
    reviewer = desk.reviewer(task, parent.reviewer if parent else None)
    desk.annotation += 1
    choice = desk.choice(task, reviewer)
    answer = Answer(
        case_id=task.case_id,
        annotation_id=desk.annotation,
        updated_at=when.isoformat(),
        reviewer=reviewer,
        decision=choice,
        rationale=f"{choice}: checked the customer's history and the terminal",
    )
    built.add(f"answers_{receive(session, answer, policy, when)}", 1)


def answer_cases(url: str, desk: Reviewing, built: Built, step: Callable[[int], None]) -> None:
    """Work every open case, oldest first, in rounds: a round's answers open the sign-offs and
    Tier 2 cases the next round works, until only cases still open at `as_of` are left."""
    while True:
        with open_session(url) as s:
            ids = [t.case_id for t in _open_cases(s, desk.as_of, desk.left_open)]
        if not ids:
            return
        for first in range(0, len(ids), ANSWER_CHUNK):
            with open_session(url) as s, s.begin():
                tasks = list(
                    s.scalars(
                        select(ReviewTask)
                        .where(ReviewTask.case_id.in_(ids[first : first + ANSWER_CHUNK]))
                        .order_by(ReviewTask.created_at)
                    )
                )
                held = _preload(s, tasks)
                with audit.deferred(s):
                    for task in tasks:
                        _work(s, task, desk, built)
                del held
            step(len(tasks))


def _preload(session: Session, tasks: list[ReviewTask]) -> list[object]:
    """Their decisions and first cases in memory: `receive` then finds them by key."""
    ids = [t.transaction_id for t in tasks]
    parents = [t.parent_case_id for t in tasks if t.parent_case_id]
    found: list[object] = [
        *session.scalars(select(Decision).where(Decision.transaction_id.in_(ids)))
    ]
    found += list(session.scalars(select(ReviewTask).where(ReviewTask.case_id.in_(parents))))
    return found


def chargebacks(
    url: str, shape: Shape, policy: Policy, built: Built, rng: np.random.Generator
) -> None:
    """A chargeback for every approved fraud whose chargeback arrived by `as_of`, recorded in
    the hourly batches the chargeback intake makes."""
    frauds = sorted(built.frauds)
    rows = []
    with open_session(url) as s:
        for first in range(0, len(frauds), 10_000):
            stmt = select(Decision.transaction_id, Decision.tx_datetime).where(
                Decision.transaction_id.in_(frauds[first : first + 10_000]),
                Decision.final_decision.in_(APPROVED),
            )
            rows += list(s.execute(stmt))
    frame = pd.DataFrame(rows, columns=["transaction_id", "tx_datetime"])
    days = rng.uniform(*CHARGEBACK_DAYS, len(frame))
    frame["arrived"] = (frame["tx_datetime"] + pd.to_timedelta(days, unit="D")).dt.ceil("h")
    frame = frame[frame["arrived"] <= shape.as_of]
    for arrived, part in frame.groupby("arrived"):
        records = [
            {"transaction_id": t, "date": d.to_pydatetime(), "reason": "card not present fraud"}
            for t, d in zip(part["transaction_id"], part["tx_datetime"], strict=True)
        ]
        with open_session(url) as s, s.begin():
            limit = policy.limits.quarantine_record_bytes
            done = record_chargebacks(
                s, records, arrived.to_pydatetime(), "bench", CHARGEBACK_ACTOR, limit
            )
        built.add("chargebacks", done.recorded)
