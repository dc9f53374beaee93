"""The weekly post-verify audit sample on the store (SQLite and PostgreSQL): cases of its own
queue with their stratum and chance, audited; a week opened once; an answer that is a label,
never a second decision; the weekly report's reading of the sample."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit, decisions, labels
from fraudloop.policy import POST_VERIFY_QUEUE, AuditSample, Policy, load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import Decision, Label, ReviewTask, make_engine
from labeling.review import answers
from labeling.review.cases import review_cases
from labeling.reviewers import register
from labeling.tasks import build_task
from monitoring import qa_data
from monitoring.exploration import estimate_audit
from pipeline.audit_sample import open_week
from pipeline.route import SELECTED, ModelInfo, build_decisions

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
WEEK_END = datetime(2026, 3, 9)  # a Monday: the week is 2 to 9 March
NOW = WEEK_END + timedelta(hours=1)
# eight auto-allowed, one async review, three auto-blocked
SCORES = [0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.2, 0.3, 0.8, 0.96, 0.97, 0.99]
REASONS = [{"feature": "tx_amount", "value": 1.0, "contribution": 0.5, "text": "big amount"}]


def _policy(approve: int = 3, reject: int = 2) -> Policy:
    sample = AuditSample(mode="post_verify", auto_approve=approve, auto_reject=reject, seed=5)
    return POLICY.model_copy(
        update={"report": POLICY.report.model_copy(update={"audit_sample": sample})}
    )


@contextmanager
def _session(db_url: str) -> Iterator[Session]:
    with Session(make_engine(db_url), expire_on_commit=False) as s, s.begin():
        yield s


def _decide(s: Session, at: datetime, prefix: str = "tx") -> None:
    """A batch routed and stored as `pipeline.decide` does (no active-learning picks)."""
    records = [
        {
            "transaction_id": f"{prefix}-{i:02d}",
            "tx_datetime": at + timedelta(minutes=i),
            "customer_id": f"c-{i}",
            "terminal_id": f"t-{i}",
            "amount": 40.0 + 10 * i,
        }
        for i in range(len(SCORES))
    ]
    tx, rejected = validate_batch(records)
    assert not rejected
    scored = pd.DataFrame(
        {
            "score": SCORES,
            "confidence": [max(v, 1 - v) for v in SCORES],
            "reasons": [REASONS] * len(SCORES),
        },
        index=tx.index,
    )
    labels.add_transactions(s, tx)
    decisions.save(s, build_decisions(tx, scored, POLICY, ModelInfo("m", "3"), at))


def _cases(s: Session) -> list[ReviewTask]:
    stmt = select(ReviewTask).where(ReviewTask.queue == POST_VERIFY_QUEUE)
    return list(s.scalars(stmt.order_by(ReviewTask.case_id)))


def test_the_week_is_sampled_per_final_decision_once(db_url: str) -> None:
    policy = _policy()
    with _session(db_url) as s:
        _decide(s, WEEK_END - timedelta(days=3))
        _decide(s, WEEK_END + timedelta(hours=2), "next")  # after the week: never drawn
        blocked = s.get(Decision, "tx-09")
        s.add(ReviewTask(**_already_queued(blocked)))  # already being reviewed: left out
    with _session(db_url) as s:
        result = open_week(s, policy, WEEK_END + timedelta(hours=5), NOW)
        assert (result.week_start, result.week_end) == (WEEK_END - timedelta(days=7), WEEK_END)
        assert result.opened == {"auto_approve": 3, "auto_reject": 2}
        assert result.population == {"auto_approve": 8, "auto_reject": 2}
    with _session(db_url) as s:
        cases = _cases(s)
        assert len(cases) == 5  # noqa: PLR2004
        assert all(c.transaction_id.startswith("tx-") for c in cases)
        assert "tx-09" not in {c.transaction_id for c in cases}
        chance = {c.strategy: c.propensity for c in cases}
        assert chance == {"auto_approve": 3 / 8, "auto_reject": 1.0}
        for c in cases:
            d = s.get(Decision, c.transaction_id)
            assert d.final_decision == c.strategy  # the stratum is the automatic decision
            assert c.status == "pending" and c.parent_case_id is None
            assert c.sla_due_at == NOW + timedelta(minutes=policy.queue_sla(POST_VERIFY_QUEUE))
            (selected,) = audit.trail(s, c.transaction_id).query("event_type == @SELECTED")[
                "details"
            ]
            assert selected["stratum"] == c.strategy
            assert selected["propensity"] == c.propensity
            assert selected["population"] == (8 if c.strategy == "auto_approve" else 2)
    with _session(db_url) as s:  # the schedule's run again, or a run by hand: nothing new
        again = open_week(s, policy, WEEK_END, NOW + timedelta(hours=3))
        assert again.already_sampled == 5 and again.opened == {}  # noqa: PLR2004
        assert len(_cases(s)) == 5  # noqa: PLR2004
        assert audit.verify(s).ok


def _already_queued(d: Decision) -> dict[str, object]:
    return {
        "case_id": f"{d.transaction_id}:active_learning",
        "transaction_id": d.transaction_id,
        "queue": "active_learning",
        "priority": 1.0,
        "created_at": d.decided_at,
        "sla_due_at": d.decided_at + timedelta(days=1),
        "status": "pending",
        "attempts": 0,
    }


def test_an_answer_is_a_label_and_the_automatic_decision_stands(db_url: str) -> None:
    policy = _policy(approve=1, reject=0)
    later = NOW + timedelta(hours=4)
    with _session(db_url) as s:
        register(s, "ana@x", "reviewer", 1, "admin@x", NOW)
        _decide(s, WEEK_END - timedelta(days=1))
        open_week(s, policy, WEEK_END, NOW)
    with _session(db_url) as s:
        (case,) = _cases(s)
        (shown,) = review_cases(s, [case])
        task = build_task(shown)["data"]
        assert task["notice"].startswith("Post-verify audit, already approved automatically")
        assert "teach the model" not in task["notice"]
        fraud = answers.Answer(
            case_id=case.case_id,
            annotation_id=1,
            updated_at="2026-03-09T05:00:00+00:00",
            reviewer="ana@x",
            decision="human_reject",
            rationale="card used far from home",
        )
        assert answers.receive(s, fraud, policy, later) == "applied"
    with _session(db_url) as s:
        assert answers.receive(s, fraud, policy, later) == "already_seen"
        d = s.get(Decision, case.transaction_id)
        assert (d.final_decision, d.reviewer) == ("auto_approve", None)  # the router's, still
        (label,) = s.scalars(select(Label).where(Label.transaction_id == case.transaction_id))
        assert (label.source, label.is_fraud, label.actor) == (POST_VERIFY_QUEUE, 1, "ana@x")
        trail = audit.trail(s, case.transaction_id)
        assert list(trail["event_type"]) == ["decision", SELECTED, answers.LABEL_EVENT]
        details = trail.iloc[-1]["details"]
        assert (details["label_source"], details["origin_queue"]) == (POST_VERIFY_QUEUE,) * 2
        assert (details["strategy"], details["propensity"]) == ("auto_approve", 1 / 8)
        assert audit.verify(s).ok
        drawn = qa_data.audit_sample(s, NOW - timedelta(days=7), NOW + timedelta(days=1))
        approve, _, _ = estimate_audit(drawn, policy.report.confidence)
        assert (approve.sampled, approve.answered, approve.errors) == (1, 1, 1)
        assert approve.population == 8 and approve.estimate.rate == 1.0  # noqa: PLR2004
