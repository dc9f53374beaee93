"""Active learning on the store (SQLite and PostgreSQL): picks within the day's review budget,
after the router's mandatory reviews; their reason, strategy and propensity on the case; an
answer that is a label and an audit event, never a second decision; labels in the features at
once."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cli.main import app
from fraudloop import audit, decisions, labels
from fraudloop.decisions import monitoring_frame
from fraudloop.policy import (
    ACTIVE_LEARNING_QUEUE,
    EXPLORATION,
    ActiveLearning,
    Policy,
    load_policy,
)
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR, get_settings
from fraudloop.storage import Decision, Label, ReviewTask, make_engine
from labeling.review import answers, sla
from labeling.review.cases import review_cases
from labeling.reviewers import register
from labeling.tasks import build_task
from pipeline.decide import choose_picks, decide, reviews_on_day
from pipeline.features import RunHistory, batch_features, feature_config
from pipeline.route import SELECTED, ModelInfo, build_decisions

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
NOW = datetime(2026, 3, 1, 23, 0)  # late in the day: paced or not, the whole budget has accrued
REASONS = [
    {"feature": "tx_amount", "value": 1.0, "contribution": 0.5, "text": "big amount"},
    {"feature": "tx_during_night", "value": 1.0, "contribution": 0.2, "text": "at night"},
    {"feature": "customer_id_nb_tx_1day_window", "value": 3.0, "contribution": 0.1, "text": "x"},
]
# five auto-allowed, two router reviews (async, sync), one auto-blocked
SCORES = [0.1, 0.3, 0.8, 0.5, 0.9, 0.05, 0.99, 0.6]
AUTO = [i for i, s in enumerate(SCORES) if s < POLICY.fraud.review_from or s > 0.95]  # noqa: PLR2004


def _policy(budget: int, pace: bool = False, share: float = 0.0, strategy: str = "mix") -> Policy:
    section = {
        **POLICY.active_learning.model_dump(),
        "pace_hourly": pace,
        "exploration_share": share,
        "strategy": strategy,
    }
    return POLICY.model_copy(
        update={
            "review": POLICY.review.model_copy(update={"daily_budget": budget}),
            "active_learning": ActiveLearning.model_validate(section),
        }
    )


def _add_picks(
    s: Session,
    tx: pd.DataFrame,
    scored: pd.DataFrame,
    routed: decisions.DecisionBatch,
    policy: Policy,
    at: datetime,
) -> int:
    """The picks of a batch already stored, stored in turn, as `decide` stores them."""
    picks = choose_picks(s, tx, scored, routed, policy, at)
    decisions.save(s, picks)
    return len(picks.reviews)


def _frame(n: int, at: datetime, prefix: str, customer: str | None = None) -> pd.DataFrame:
    records = [
        {
            "transaction_id": f"{prefix}-{i}",
            "tx_datetime": at - timedelta(minutes=n - i),
            "customer_id": customer or f"c-{prefix}-{i}",
            "terminal_id": f"t-{prefix}-{i}",
            "amount": 40.0 + 10 * i,
        }
        for i in range(n)
    ]
    frame, rejected = validate_batch(records)
    assert not rejected
    return frame


def _score(
    s: Session,
    policy: Policy,
    at: datetime,
    prefix: str = "tx",
    scores: list[float] = SCORES,
    customer: str | None = None,
) -> int:
    """Route and store a batch as `pipeline.decide` does, then add its picks."""
    tx = _frame(len(scores), at, prefix, customer)
    scored = pd.DataFrame(
        {
            "score": scores,
            "confidence": [max(v, 1 - v) for v in scores],
            "reasons": [REASONS] * len(scores),
        },
        index=tx.index,
    )
    labels.add_transactions(s, tx)
    routed = build_decisions(tx, scored, policy, ModelInfo("m", "3"), at)
    decisions.save(s, routed)
    return _add_picks(s, tx, scored, routed, policy, at)


@contextmanager
def _session(db_url: str) -> Iterator[Session]:
    with Session(make_engine(db_url), expire_on_commit=False) as s, s.begin():
        yield s


def _cases(s: Session, queue: str) -> list[ReviewTask]:
    return list(s.scalars(select(ReviewTask).where(ReviewTask.queue == queue)))


def test_picks_are_cases_of_their_own_queue_with_reason_strategy_and_propensity(
    db_url: str,
) -> None:
    policy = _policy(budget=6, share=0.5)
    with _session(db_url) as s:
        assert _score(s, policy, NOW) == 4  # 6 less the 2 router reviews
    with _session(db_url) as s:
        picks = _cases(s, ACTIVE_LEARNING_QUEUE)
        router = [t.transaction_id for t in _cases(s, "sync_review") + _cases(s, "async_review")]
        assert sorted(router) == ["tx-2", "tx-4"]  # mandatory, never a candidate
        assert {t.transaction_id for t in picks} <= {f"tx-{i}" for i in AUTO}
        explored = [t for t in picks if t.strategy == EXPLORATION]
        assert len(explored) == 2  # half of the 4 picks: exactly, as 2 is whole
        for t in explored:
            assert t.propensity == pytest.approx(2 / len(AUTO))  # 2 drawn of 6 candidates
        assert all(t.propensity == 1.0 for t in picks if t.strategy != EXPLORATION)
        assert all(t.selection_reason and t.strategy for t in picks)
        factor = policy.queues[ACTIVE_LEARNING_QUEUE].priority_factor
        for t in picks:
            d = s.get(Decision, t.transaction_id)
            assert t.priority == pytest.approx(factor * d.score * d.amount, abs=1e-4)
            assert t.sla_due_at == NOW + timedelta(minutes=policy.sla_minutes.active_learning)
            assert d.final_decision in ("auto_approve", "auto_reject")  # stays the router's
            assert t.status == "pending" and t.parent_case_id is None
        trail = audit.trail(s)
        selected = trail[trail["event_type"] == SELECTED]
        assert sorted(selected["transaction_id"]) == sorted(t.transaction_id for t in picks)
        assert audit.verify(s).ok


def test_the_routers_reviews_come_first_and_are_never_dropped(db_url: str) -> None:
    """Three mandatory reviews against a budget of two: all three are cases, no pick; once
    the day's budget is spent a batch costs one count query, no selection."""
    policy = _policy(budget=2)
    with _session(db_url) as s:
        assert _score(s, policy, NOW, scores=[0.8, 0.9, 0.75, 0.1, 0.2]) == 0
    with _session(db_url) as s:
        assert len(_cases(s, "sync_review") + _cases(s, "async_review")) == 3
        assert _cases(s, ACTIVE_LEARNING_QUEUE) == []
        assert reviews_on_day(s, NOW) == 3
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        tx = _frame(3, NOW, "late")
        scored = pd.DataFrame(
            {"score": [0.1, 0.2, 0.3], "confidence": [0.9, 0.8, 0.7], "reasons": [REASONS] * 3},
            index=tx.index,
        )
        routed = build_decisions(tx, scored, policy, ModelInfo("m", "3"), NOW)
        decisions.save(s, routed)
        statements: list[str] = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert _add_picks(s, tx, scored, routed, policy, NOW) == 0
        finally:
            event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 1 and "count" in statements[0].lower()


def test_the_budget_is_per_utc_day(db_url: str) -> None:
    policy = _policy(budget=3)
    with _session(db_url) as s:
        assert _score(s, policy, NOW, "a") == 1  # 2 router reviews + 1 pick
        assert _score(s, policy, NOW + timedelta(minutes=30), "b") == 0  # spent (router: 2 more)
        next_day = NOW + timedelta(hours=1, minutes=10)  # 00:10 UTC the next day
        assert _score(s, policy, next_day, "c") == 1
        assert reviews_on_day(s, NOW) == 5 and reviews_on_day(s, next_day) == 3
    paced = _policy(budget=48, pace=True)
    with _session(db_url) as s:  # 00:10 of a fresh day: 2 of 48 accrued, the router took both
        assert _score(s, paced, datetime(2026, 3, 5, 0, 10), "d") == 0
        at = datetime(2026, 3, 5, 1, 10)
        assert _score(s, paced, at, "e", scores=[0.1, 0.2, 0.3]) == 2  # 4 accrued by 02:00


def test_a_retried_batch_adds_no_second_case(db_url: str) -> None:
    policy = _policy(budget=100)
    with _session(db_url) as s:
        first = _score(s, policy, NOW)
    with _session(db_url) as s:
        _score(s, policy, NOW)
        assert len(_cases(s, ACTIVE_LEARNING_QUEUE)) == first == len(AUTO)


def _register(s: Session) -> None:
    register(s, "ana@x", "reviewer", 1, "admin@x", NOW)


def _answer(case_id: str, n: int, decision: str, rationale: str | None = None) -> answers.Answer:
    return answers.Answer(
        case_id=case_id,
        annotation_id=n,
        updated_at=f"2026-03-01T23:{n:02d}:00+00:00",
        reviewer="ana@x",
        decision=decision,
        rationale=rationale,
    )


@pytest.mark.parametrize(("share", "source"), [(0.0, ACTIVE_LEARNING_QUEUE), (1.0, EXPLORATION)])
def test_an_answer_on_a_pick_is_a_label_and_an_audit_event_never_a_decision(
    db_url: str, share: float, source: str
) -> None:
    policy = _policy(budget=3, share=share, strategy="top_score")
    later = NOW + timedelta(minutes=15)
    with _session(db_url) as s:
        _register(s)
        _score(s, policy, NOW)
    with _session(db_url) as s:
        (pick,) = _cases(s, ACTIVE_LEARNING_QUEUE)
        fraud = _answer(pick.case_id, 1, "human_reject", "card used far from home")
        assert answers.receive(s, fraud, policy, later) == "applied"
    with _session(db_url) as s:
        assert answers.receive(s, fraud, policy, later) == "already_seen"
        task = s.get(ReviewTask, pick.case_id)
        assert (task.status, task.decision, task.reviewer) == ("reviewed", "human_reject", "ana@x")
        d = s.get(Decision, pick.transaction_id)
        assert d.final_decision == "auto_approve" and d.reviewer is None  # the router's, still
        (label,) = s.scalars(select(Label).where(Label.transaction_id == pick.transaction_id))
        assert (label.source, label.is_fraud, label.known_at, label.actor) == (
            source,
            1,
            later,
            "ana@x",
        )
        trail = audit.trail(s, pick.transaction_id)
        assert list(trail["event_type"]) == ["decision", SELECTED, answers.LABEL_EVENT]
        labelled = trail.iloc[-1]
        assert labelled["details"]["label_source"] == source
        assert labelled["details"]["propensity"] == pick.propensity
        assert labelled["sla_metadata"]["queue"] == ACTIVE_LEARNING_QUEUE
        assert audit.verify(s).ok  # the decision still matches its last decision event
        frame = monitoring_frame(s)
        assert frame["review_created_at"].notna().sum() == 2  # the router's only: no pick


def test_a_big_pick_needs_no_second_signoff_and_an_escalated_one_is_still_a_label(
    db_url: str,
) -> None:
    policy = _policy(budget=3, strategy="impact")
    with _session(db_url) as s:
        _register(s)
        register(s, "sam@x", "senior", 2, "admin@x", NOW)
        big = policy.high_impact.amount_above * 3
        tx = _frame(2, NOW, "big")
        tx["amount"] = [big, big]
        scored = pd.DataFrame(  # blocked: a big amount the model would allow goes to a person
            {"score": [0.97, 0.98], "confidence": [0.97, 0.98], "reasons": [REASONS] * 2},
            index=tx.index,
        )
        routed = build_decisions(tx, scored, policy, ModelInfo("m", "3"), NOW)
        decisions.save(s, routed)
        assert _add_picks(s, tx, scored, routed, policy, NOW) == 2
    with _session(db_url) as s:
        legit = _answer("big-0:active_learning", 1, "human_approve")
        assert answers.receive(s, legit, policy, NOW) == "applied"  # no sign-off: no decision
        up = _answer("big-1:active_learning", 2, "escalated", "unsure, ask a senior")
        assert answers.receive(s, up, policy, NOW) == "escalated"
    with _session(db_url) as s:
        senior = _answer("big-1:tier2", 3, "human_reject", "same pattern as last week").model_copy(
            update={"reviewer": "sam@x"}
        )
        assert answers.receive(s, senior, policy, NOW) == "applied"
    with _session(db_url) as s:
        assert s.get(ReviewTask, "big-0:second_signoff") is None
        assert [d.final_decision for d in s.scalars(select(Decision))] == ["auto_reject"] * 2
        found = dict(s.execute(select(Label.transaction_id, Label.is_fraud)).tuples().all())
        assert found == {"big-0": 0, "big-1": 1}


@pytest.mark.parametrize("in_a_run", [False, True])
def test_a_label_synced_now_changes_the_next_transactions_features(
    db_url: str, in_a_run: bool
) -> None:
    """A reviewer's fraud label on one payment raises the "frauds known" features of the
    customer's and the terminal's next payments from the moment it is synced, not 7 days
    later; a payment made before the sync does not see it. Online (the batch's own history
    read) and in a scoring run's chunks (`RunHistory`) alike."""
    policy = _policy(budget=5, strategy="top_score")
    synced = NOW + timedelta(minutes=10)
    with _session(db_url) as s:
        _register(s)
        _score(s, policy, NOW, "first", scores=[0.4], customer="carol")
        pick = f"first-0:{ACTIVE_LEARNING_QUEUE}"
        assert s.get(ReviewTask, pick) is not None

    def next_payment(at: datetime, tx_id: str) -> pd.Series:
        frame, _ = validate_batch(
            [
                {
                    "transaction_id": tx_id,
                    "tx_datetime": at,
                    "customer_id": "carol",
                    "terminal_id": "t-first-0",
                    "amount": 55.0,
                }
            ]
        )
        with _session(db_url) as s:
            run = RunHistory() if in_a_run else None
            return batch_features(s, frame, feature_config(policy), run).iloc[0]

    customer, terminal = "customer_id_frauds_known_1day", "terminal_id_frauds_known_1day"
    before = next_payment(synced + timedelta(minutes=5), "next-0")
    assert (before[customer], before[terminal]) == (0.0, 0.0)
    with _session(db_url) as s:
        fraud = _answer(pick, 1, "human_reject", "customer confirmed the card was stolen")
        assert answers.receive(s, fraud, policy, synced) == "applied"
    after = next_payment(synced + timedelta(minutes=5), "next-1")
    assert (after[customer], after[terminal]) == (1.0, 1.0)
    earlier = next_payment(synced - timedelta(minutes=1), "next-2")  # made before the sync
    assert (earlier[customer], earlier[terminal]) == (0.0, 0.0)


def test_an_overdue_pick_stays_in_its_queue_at_its_lower_priority(db_url: str) -> None:
    policy = _policy(budget=4)
    late = NOW + timedelta(minutes=policy.sla_minutes.active_learning + 90)
    with _session(db_url) as s:
        _score(s, policy, NOW)
        result = sla.sweep(s, policy, late)
    with _session(db_url) as s:
        assert sorted(result.escalated) == ["tx-2:async_review", "tx-4:sync_review"]
        boost = policy.escalation.age_boost_per_hour
        hours = (late - NOW) // timedelta(hours=1)
        factor = policy.queues[ACTIVE_LEARNING_QUEUE].priority_factor
        for t in _cases(s, ACTIVE_LEARNING_QUEUE):
            d = s.get(Decision, t.transaction_id)
            assert t.status == "pending"
            expected = factor * d.score * d.amount * (1 + boost * hours)
            assert t.priority == pytest.approx(expected, abs=1e-4)


def test_the_task_says_why_it_was_chosen_and_that_it_decides_nothing(db_url: str) -> None:
    policy = _policy(budget=3, strategy="top_score")
    with _session(db_url) as s:
        _score(s, policy, NOW)
        (pick,) = _cases(s, ACTIVE_LEARNING_QUEUE)
        (case,) = review_cases(s, [pick])
    data = build_task(case)["data"]
    assert data["selection_reason"] == pick.selection_reason
    assert "top score below the review band" in data["notice"]
    assert "changes no decision" in data["notice"] and "approved automatically" in data["notice"]


def test_fraudloop_exploration_reports_the_picks_and_the_estimate(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every auto-decided transaction of a batch explored (chance 1): the estimate is the
    labelled share, and the command prints it with the picks by strategy."""
    policy = _policy(budget=100, share=1.0)
    with _session(db_url) as s:
        _register(s)
        _score(s, policy, NOW)
        for n, pick in enumerate(_cases(s, ACTIVE_LEARNING_QUEUE), 1):
            fraud = pick.transaction_id == "tx-0"
            verdict = ("human_reject", "stolen card") if fraud else ("human_approve", None)
            answers.receive(s, _answer(pick.case_id, n, *verdict), policy, NOW)
    monkeypatch.setenv("FRAUDLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUDLOOP_DB_URL", db_url)
    get_settings.cache_clear()
    out = tmp_path / "estimates.json"
    try:
        result = CliRunner().invoke(app, ["exploration", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "auto-allowed" in result.output and "exploration" in result.output
    allowed, blocked = json.loads(out.read_text())
    assert (allowed["answered"], allowed["misses"]) == (len(AUTO) - 1, 1)  # one auto-blocked
    assert allowed["estimate"]["rate"] == pytest.approx(1 / (len(AUTO) - 1))
    assert (blocked["answered"], blocked["misses"]) == (1, 1)  # tx-6, labelled legitimate


def test_fraudloop_exploration_says_when_there_is_nothing_yet(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUDLOOP_DB_URL", db_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["exploration"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and "no active-learning picks" in result.output


class _Scripted:
    """The model's side of `decide` with scores fixed per row: this test is about what the
    store keeps, not about what a model would say."""

    name, version = "m", 3

    def __init__(self, scores: list[float]) -> None:
        self.scores = scores

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "score": self.scores,
                "confidence": [max(v, 1 - v) for v in self.scores],
                "reasons": [REASONS] * len(self.scores),
            },
            index=features.index,
        )


def test_a_batch_decided_twice_picks_once_within_the_budget(db_url: str) -> None:
    """The picks are chosen before the batch's own router reviews are stored, and still the
    budget counts them; a retried batch stores nothing new and picks nothing."""
    policy, model = _policy(budget=3), _Scripted(SCORES)
    tx = _frame(len(SCORES), NOW, "twice")
    with _session(db_url) as s:
        first = decide(s, tx, model, policy, NOW, select_reviews=True)  # type: ignore[arg-type]
    with _session(db_url) as s:
        again = decide(s, tx, model, policy, NOW, select_reviews=True)  # type: ignore[arg-type]
    assert (first.new, first.picked, first.fallback) == (len(SCORES), 1, False)
    assert (again.new, again.picked) == (0, 0)
    with _session(db_url) as s:
        assert len(_cases(s, ACTIVE_LEARNING_QUEUE)) == 1
        assert reviews_on_day(s, NOW) == 3  # two router reviews and the one pick
