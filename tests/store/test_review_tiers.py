"""Review tiers on the store (SQLite and PostgreSQL): SLA escalation, Tier 3 pages, second
sign-off by two different reviewers, returns to the queue, notes that decide nothing, registered
reviewers only, seniors only in Tier 2."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit, decisions
from fraudloop.alerts import MemorySink
from fraudloop.policy import load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import Decision, ReviewTask, make_engine
from labeling.review import answers, cases, paging, sla
from labeling.review.paging import send_pages
from labeling.reviewers import register
from pipeline.route import ModelInfo, build_decisions

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
NOW = datetime(2026, 3, 1, 12, 0)
HIGH = POLICY.high_impact.amount_above + 500  # needs a second sign-off
INCIDENT = POLICY.escalation.incident_amount_above + 1  # pages Tier 3 when its SLA breaks
# registered as `fraudloop reviewers add` does; anyone else's answers do not count
REVIEWERS = {"ana@x": "reviewer", "bo@x": "reviewer", "cy@x": "reviewer", "dee@x": "reviewer"}
REVIEWERS |= {"sam@x": "senior"}


def _store(db_url: str, amounts: list[float], scores: list[float]) -> Session:
    records = [
        {
            "transaction_id": f"tx-{i}",
            "tx_datetime": NOW - timedelta(minutes=5),
            "customer_id": f"c{i}",
            "terminal_id": "t1",
            "amount": amount,
            "card_number": "4000000000001234",
            "email": "a@b.com",
            "ip_address": "10.1.2.3",
        }
        for i, amount in enumerate(amounts)
    ]
    frame, rejected = validate_batch(records)
    assert not rejected
    reasons = [{"feature": "amount", "value": 1.0, "contribution": 0.5, "text": "big amount"}] * 3
    scored = pd.DataFrame(
        {
            "score": scores,
            "confidence": [max(v, 1 - v) for v in scores],
            "reasons": [reasons] * len(scores),
        }
    )
    batch = build_decisions(frame, scored, POLICY, ModelInfo("m", "4"), NOW)
    session = Session(make_engine(db_url), expire_on_commit=False)
    with _tx(session):
        decisions.save(session, batch)
        for user_id, (email, role) in enumerate(REVIEWERS.items(), 1):
            register(session, email, role, user_id, "admin@x", NOW)
    return session


@contextmanager
def _tx(session: Session) -> Iterator[None]:
    """Commit what the block did (reads outside it autobegin, so `begin()` would clash)."""
    yield
    session.commit()


def _answer(case_id: str, n: int, reviewer: str, decision: str | None, **kw: str) -> answers.Answer:
    return answers.Answer(
        case_id=case_id,
        annotation_id=n,
        updated_at=f"2026-03-01T12:{n:02d}:00+00:00",
        reviewer=reviewer,
        decision=decision,
        **kw,
    )


def _receive(s: Session, answer: answers.Answer, minutes: int = 10) -> str:
    with _tx(s):
        return answers.receive(s, answer, POLICY, NOW + timedelta(minutes=minutes))


def _events(s: Session, tx: str) -> pd.DataFrame:
    with _tx(s):
        return audit.trail(s, tx)


def test_sla_breach_escalates_to_tier2_once_and_pages_tier3(db_url: str) -> None:
    # tx-0: sync review (score 0.9, SLA 30 min); tx-1: async (0.8, 120 min); tx-2 sync, big
    s = _store(db_url, [50.0, 60.0, INCIDENT], [0.9, 0.8, 0.9])
    at = NOW + timedelta(minutes=31)
    with _tx(s):
        result = sla.sweep(s, POLICY, at)
    assert sorted(result.escalated) == ["tx-0:sync_review", "tx-2:sync_review"]
    assert [p.case_id for p in result.pages] == ["tx-2:sync_review"]  # incident by amount
    with _tx(s):
        again = sla.sweep(s, POLICY, at + timedelta(minutes=1))
    assert again.escalated == []  # idempotent
    first, tier2 = s.get(ReviewTask, "tx-0:sync_review"), s.get(ReviewTask, "tx-0:tier2")
    assert first.status == "escalated" and first.status_reason.startswith("sla_breach")
    assert tier2.parent_case_id == first.case_id and tier2.status == "pending"
    assert tier2.sla_due_at == at + timedelta(minutes=POLICY.sla_minutes.tier2)
    assert s.get(ReviewTask, "tx-1:async_review").status == "pending"  # within its 2 h SLA
    assert s.get(Decision, "tx-0").final_decision is None  # still pending, now with seniors
    event = _events(s, "tx-0").iloc[-1]
    assert (event["event_type"], event["decision"], event["actor"]) == (
        "escalated",
        "escalated",
        cases.SWEEP_ACTOR,
    )
    assert event["sla_metadata"]["expected_minutes"] == 30
    assert event["sla_metadata"]["actual_minutes"] == 31 and not event["sla_metadata"]["met"]

    sink = MemorySink()
    with _tx(s):
        assert send_pages(s, result.pages, sink, at) == 1
        # an unresolved Tier 2 case past its own SLA pages Tier 3 too
        later = at + timedelta(minutes=POLICY.sla_minutes.tier2 + 1)
        pages = paging.pages_due(s, POLICY, later)
    assert [a.scope for a in sink.alerts] == ["tx-2:sync_review"]
    assert {p.case_id for p in pages} == {"tx-0:tier2", "tx-2:tier2"}
    with _tx(s):
        send_pages(s, pages, sink, later)
        assert paging.pages_due(s, POLICY, later) == []  # paged once
    paged = _events(s, "tx-0")
    assert paged.iloc[-1]["event_type"] == "tier3_page"
    assert paged.iloc[-1]["sla_metadata"]["expected_minutes"] == POLICY.sla_minutes.tier2


def test_second_signoff_needs_another_reviewer_who_agrees(db_url: str) -> None:
    s = _store(db_url, [HIGH], [0.9])
    case = "tx-0:sync_review"
    assert _receive(s, _answer(case, 1, "ana@x", "human_reject")) == "awaiting_signoff"
    assert s.get(Decision, "tx-0").final_decision is None  # one signature is not enough
    signoff = s.get(ReviewTask, "tx-0:second_signoff")
    assert signoff.parent_case_id == case and signoff.status == "pending"
    with _tx(s):
        assert "first decision cannot sign again" in cases.notice(s, signoff)

    same = _answer(signoff.case_id, 2, "ana@x", "human_reject")
    assert _receive(s, same) == "invalid"  # Label Studio let her annotate twice; we do not
    assert _receive(s, same) == "already_seen"
    s.refresh(signoff)
    assert signoff.status == "pending" and signoff.ls_patch["delete_annotations"] == [2]
    assert s.get(Decision, "tx-0").final_decision is None

    assert _receive(s, _answer(signoff.case_id, 3, "bo@x", "human_reject")) == "applied"
    d = s.get(Decision, "tx-0")
    assert (d.final_decision, d.reviewer) == ("human_reject", "bo@x")
    kinds = list(_events(s, "tx-0")["event_type"])
    assert kinds == ["routed_to_review", "first_signoff", "invalid_annotation", "review"]


def test_signoff_disagreement_goes_to_tier2_where_a_senior_decides(db_url: str) -> None:
    s = _store(db_url, [HIGH], [0.9])
    _receive(s, _answer("tx-0:sync_review", 1, "ana@x", "human_reject"))
    disagree = _answer("tx-0:second_signoff", 2, "bo@x", "human_approve", rationale="known")
    assert _receive(s, disagree) == "escalated"
    tier2 = s.get(ReviewTask, "tx-0:tier2")
    assert tier2 is not None and tier2.parent_case_id == "tx-0:second_signoff"
    assert s.get(Decision, "tx-0").final_decision is None
    with _tx(s):
        assert "second sign-off disagrees" in cases.notice(s, tier2)

    junior = _answer("tx-0:tier2", 3, "cy@x", "human_approve", rationale="looks fine")
    assert _receive(s, junior) == "invalid"  # Tier 2 is for seniors
    assert s.get(ReviewTask, "tx-0:tier2").status_reason == (
        "Tier 2 decisions need a senior reviewer; cy@x is a reviewer"
    )
    assert s.get(Decision, "tx-0").final_decision is None
    assert _receive(s, _answer("tx-0:tier2", 4, "sam@x", "human_reject")) == "applied"
    d = s.get(Decision, "tx-0")
    assert (d.final_decision, d.reviewer) == ("human_reject", "sam@x")
    late = _answer("tx-0:sync_review", 5, "dee@x", "human_approve", rationale="late")
    assert _receive(s, late) == "late"


def test_escalate_and_request_info_and_senior_escalation_page(db_url: str) -> None:
    s = _store(db_url, [80.0], [0.8])
    case = "tx-0:async_review"
    info = _answer(case, 1, "ana@x", "request_info", rationale="call the cardholder")
    assert _receive(s, info) == "returned"
    task = s.get(ReviewTask, case)
    assert task.status == "pending" and "call the cardholder" in task.ls_patch["data"]["notice"]
    escalate = _answer(case, 2, "bo@x", "escalated", rationale="pattern I have not seen")
    assert _receive(s, escalate) == "escalated"
    assert _receive(s, escalate) == "already_seen"
    assert s.get(ReviewTask, "tx-0:tier2") is not None
    up = _answer("tx-0:tier2", 3, "sam@x", "escalated", rationale="looks like a breach")
    assert _receive(s, up) == "escalated"
    with _tx(s):
        pages = paging.pages_due(s, POLICY, NOW + timedelta(minutes=11))
    assert [p.case_id for p in pages] == ["tx-0:tier2"]
    assert "looks like a breach" in pages[0].reason
    assert s.get(Decision, "tx-0").final_decision is None


def test_priority_ages_and_is_mirrored_for_delivered_cases(db_url: str) -> None:
    s = _store(db_url, [100.0, 100.0], [0.8, 0.9])
    with _tx(s):
        s.get(ReviewTask, "tx-0:async_review").status = "delivered"
        s.get(ReviewTask, "tx-0:async_review").ls_task_id = 7
    with _tx(s):
        assert sla.refresh_priorities(s, POLICY, NOW + timedelta(minutes=59)) == 0
        assert sla.refresh_priorities(s, POLICY, NOW + timedelta(hours=2, minutes=1)) == 2
    boost = 1 + POLICY.escalation.age_boost_per_hour * 2
    delivered = s.get(ReviewTask, "tx-0:async_review")
    assert delivered.priority == pytest.approx(0.8 * 100 * boost)
    assert delivered.ls_patch["data"]["priority"] == delivered.priority
    assert s.get(ReviewTask, "tx-1:sync_review").ls_patch is None  # not in Label Studio yet
    with _tx(s):
        tasks = list(s.scalars(select(ReviewTask).order_by(ReviewTask.priority.desc())))
    assert [t.case_id for t in tasks] == ["tx-1:sync_review", "tx-0:async_review"]


def test_annotate_adds_a_note_and_decides_nothing(db_url: str) -> None:
    s = _store(db_url, [80.0, 90.0], [0.8, 0.8])
    case = "tx-0:async_review"
    before = s.get(ReviewTask, case)
    due, reason = before.sla_due_at, before.status_reason
    note = _answer(case, 1, "ana@x", "annotate", rationale="cardholder called, travelling")
    assert _receive(s, note) == "annotated"
    assert _receive(s, note, minutes=20) == "already_seen"  # webhook and reconciliation both
    task = s.get(ReviewTask, case)
    assert (task.status, task.sla_due_at, task.status_reason) == ("pending", due, reason)
    assert task.decision is None and task.reviewer is None
    assert task.ls_patch["delete_annotations"] == [1]  # out of Label Studio, not the trail
    assert task.ls_patch["data"]["reviewer_notes"] == (
        "2026-03-01 12:10 UTC, ana: cardholder called, travelling"
    )
    assert s.get(Decision, "tx-0").final_decision is None
    events = _events(s, "tx-0")
    notes = events[events["event_type"] == cases.NOTE_EVENT]
    assert len(notes) == 1
    assert (notes.iloc[0]["actor"], notes.iloc[0]["review_rationale"]) == (
        "ana@x",
        "cardholder called, travelling",
    )

    more = _answer(case, 2, "bo@x", "annotate", rationale="card 4000 0000 0000 1234 seen twice")
    assert _receive(s, more, minutes=15) == "annotated"
    shown = s.get(ReviewTask, case).ls_patch["data"]["reviewer_notes"].splitlines()
    assert shown[0] == "2026-03-01 12:10 UTC, ana: cardholder called, travelling"
    assert shown[1].startswith("2026-03-01 12:15 UTC, bo: card [redacted]")
    assert "4000" not in shown[1]  # Label Studio gets no PII, even pasted into a note
    decide = _answer(case, 3, "dee@x", "human_approve", rationale="travel confirmed")
    assert _receive(s, decide) == "applied"
    assert s.get(Decision, "tx-0").final_decision == "human_approve"

    # a note follows the case to Tier 2: the senior reads it once the case is delivered
    other = "tx-1:async_review"
    assert _receive(s, _answer(other, 4, "ana@x", "annotate", rationale="odd hour")) == "annotated"
    up = _answer(other, 5, "bo@x", "escalated", rationale="unsure")
    assert _receive(s, up) == "escalated"
    tier2 = s.get(ReviewTask, "tx-1:tier2")
    assert tier2.ls_patch["data"]["reviewer_notes"] == "2026-03-01 12:10 UTC, ana: odd hour"
    junior = _answer("tx-1:tier2", 6, "cy@x", "annotate", rationale="my two cents")
    assert _receive(s, junior) == "invalid"  # Tier 2 takes notes from seniors only


def test_an_unregistered_user_decides_nothing(db_url: str) -> None:
    s = _store(db_url, [80.0], [0.8])
    case = "tx-0:async_review"
    admin = _answer(case, 1, "admin@labelstudio", "human_reject")  # valid, but not a reviewer
    assert _receive(s, admin) == "invalid"
    assert _receive(s, admin) == "already_seen"
    task = s.get(ReviewTask, case)
    assert task.status == "pending" and task.ls_patch["delete_annotations"] == [1]
    assert task.status_reason.startswith("admin@labelstudio is not a fraudloop reviewer")
    assert "fraudloop reviewers add" in task.ls_patch["data"]["notice"]
    assert s.get(Decision, "tx-0").final_decision is None
    invalid = _events(s, "tx-0").iloc[-1]
    assert (invalid["event_type"], invalid["actor"]) == ("invalid_annotation", "admin@labelstudio")
    assert "not a fraudloop reviewer" in invalid["details"]["problem"]
    assert _receive(s, _answer(case, 2, "ana@x", "human_reject")) == "applied"
