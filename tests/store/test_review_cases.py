"""A review case's way out of its queue, typed (`review_tasks.exit_code`, `cases.Exit`), and what
reads it: Tier 3 pages. Notes keep a case open; a second sign-off by the first reviewer is
returned with its reason."""

from datetime import datetime, timedelta

import pandas as pd
import pytest
from alembic import command
from sqlalchemy import MetaData, Table, insert, select
from sqlalchemy.orm import Session

from fraudloop import audit, decisions, labels
from fraudloop.alerts import MemorySink
from fraudloop.policy import load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import Decision, ReviewTask, alembic_config, make_engine
from labeling.review import answers, cases, paging, sla
from labeling.review.cases import Exit
from labeling.reviewers import register
from pipeline.route import ModelInfo, build_decisions

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
NOW = datetime(2026, 3, 1, 12, 0)
HIGH = POLICY.high_impact.amount_above + 500  # a second sign-off, no page by amount
INCIDENT = POLICY.escalation.incident_amount_above + 1  # an SLA breach of it pages Tier 3
SYNC, ASYNC = 0.9, 0.8  # scores routed to the sync (30 min SLA) and async (2 h) queues
REVIEWERS = {"ana@x": "reviewer", "bo@x": "reviewer", "sam@x": "senior"}
SAME_SIGNER = "the second sign-off must come from another reviewer than the first one"


def _store(db_url: str, cases_: list[tuple[float, float]]) -> Session:
    """One decision per (amount, score), routed as the policy says, reviewers registered."""
    records = [
        {
            "transaction_id": f"tx-{i}",
            "tx_datetime": NOW - timedelta(minutes=5),
            "customer_id": f"c{i}",
            "terminal_id": "t1",
            "amount": amount,
            "card_number": "4000000000001234",
        }
        for i, (amount, _) in enumerate(cases_)
    ]
    frame, rejected = validate_batch(records)
    assert not rejected
    scores = [score for _, score in cases_]
    reasons = [{"feature": "amount", "value": 1.0, "contribution": 0.5, "text": "big amount"}] * 3
    scored = pd.DataFrame(
        {
            "score": scores,
            "confidence": [max(v, 1 - v) for v in scores],
            "reasons": [reasons] * len(scores),
        }
    )
    session = Session(make_engine(db_url), expire_on_commit=False)
    decisions.save(session, build_decisions(frame, scored, POLICY, ModelInfo("m", "4"), NOW))
    for user_id, (email, role) in enumerate(REVIEWERS.items(), 1):
        register(session, email, role, user_id, "admin@x", NOW)
    session.commit()
    return session


def _receive(
    s: Session, case_id: str, n: int, reviewer: str, decision: str, minutes: int = 10
) -> str:
    answer = answers.Answer(
        case_id=case_id,
        annotation_id=n,
        updated_at=f"2026-03-01T12:{n:02d}:00+00:00",
        reviewer=reviewer,
        decision=decision,
        rationale=f"{decision} by {reviewer}",
    )
    outcome = answers.receive(s, answer, POLICY, NOW + timedelta(minutes=minutes))
    s.commit()
    return outcome


def _sweep(s: Session, minutes: int) -> sla.SweepResult:
    result = sla.sweep(s, POLICY, NOW + timedelta(minutes=minutes))
    s.commit()
    return result


def _exit_codes(s: Session) -> dict[str, str | None]:
    return dict(s.execute(select(ReviewTask.case_id, ReviewTask.exit_code)).all())


def _events(s: Session, event_type: str) -> pd.DataFrame:
    trail = audit.trail(s)
    s.commit()
    return trail[trail["event_type"] == event_type].reset_index(drop=True)


def test_each_way_out_of_a_queue_is_typed_on_the_case(db_url: str) -> None:
    # tx-0 breaks its sync SLA; tx-1 is escalated by a reviewer, then by a senior to Tier 3;
    # tx-2's sign-off disagrees; tx-3 is decided
    s = _store(db_url, [(50.0, SYNC), (80.0, ASYNC), (HIGH, ASYNC), (80.0, ASYNC)])
    assert _receive(s, "tx-1:async_review", 1, "ana@x", "escalated") == "escalated"
    assert _receive(s, "tx-1:tier2", 2, "sam@x", "escalated") == "escalated"
    assert _receive(s, "tx-2:async_review", 3, "ana@x", "human_reject") == "awaiting_signoff"
    assert _receive(s, "tx-2:second_signoff", 4, "bo@x", "human_approve") == "escalated"
    assert _receive(s, "tx-3:async_review", 5, "bo@x", "human_approve") == "applied"
    assert _sweep(s, 31).escalated == ["tx-0:sync_review"]

    assert _exit_codes(s) == {
        "tx-0:sync_review": Exit.SLA_BREACH,
        "tx-0:tier2": None,  # open
        "tx-1:async_review": Exit.REVIEWER_ESCALATION,
        "tx-1:tier2": Exit.TIER3,
        "tx-2:async_review": None,  # the first sign-off: decided, not escalated
        "tx-2:second_signoff": Exit.SIGNOFF_DISAGREEMENT,
        "tx-2:tier2": None,
        "tx-3:async_review": None,
    }
    for task in s.scalars(select(ReviewTask).where(ReviewTask.exit_code.is_not(None))):
        assert task.status == "escalated"
        assert task.status_reason.startswith(f"{task.exit_code}: ")  # the text, for people
    escalated = _events(s, "escalated")
    moves = {d["case_id"]: (d["reason"], d["to"]) for d in escalated["details"]}
    assert moves == {
        "tx-1:async_review": ("reviewer_escalation", "tier2"),
        "tx-1:tier2": ("tier3", "tier3"),
        "tx-2:second_signoff": ("signoff_disagreement", "tier2"),
        "tx-0:sync_review": ("sla_breach", "tier2"),
    }
    assert s.get(ReviewTask, "tx-1:tier3") is None  # Tier 3 is paged, never queued


def test_a_case_escalates_once_and_keeps_its_first_exit_code(db_url: str) -> None:
    s = _store(db_url, [(80.0, ASYNC)])
    task = s.get(ReviewTask, "tx-0:async_review")
    at = NOW + timedelta(minutes=130)
    args = ("overdue", cases.SWEEP_ACTOR, POLICY, at)
    assert cases.escalate(s, task, Exit.SLA_BREACH, *args) is True
    assert cases.escalate(s, task, Exit.REVIEWER_ESCALATION, *args) is False  # same case
    s.commit()
    assert (task.exit_code, task.status_reason) == (Exit.SLA_BREACH, "sla_breach: overdue")
    tier2 = s.get(ReviewTask, "tx-0:tier2")
    assert (tier2.parent_case_id, tier2.status, tier2.exit_code) == (task.case_id, "pending", None)
    assert tier2.sla_due_at == at + timedelta(minutes=POLICY.sla_minutes.tier2)
    event = _events(s, "escalated").iloc[0]
    assert len(_events(s, "escalated")) == 1
    assert event["sla_metadata"] == cases.sla_metadata(task, POLICY, at)
    assert (event["sla_metadata"]["actual_minutes"], event["sla_metadata"]["met"]) == (130, False)


def test_pages_due_reads_the_exit_code_never_the_status_text(db_url: str) -> None:
    # tx-0 to tx-2 above the incident amount, each leaving its queue another way; tx-3 below it:
    # only tx-0's SLA breach is an incident
    s = _store(db_url, [(INCIDENT, SYNC), (INCIDENT, ASYNC), (INCIDENT, ASYNC), (50.0, SYNC)])
    assert _receive(s, "tx-1:async_review", 1, "ana@x", "escalated") == "escalated"
    assert _receive(s, "tx-2:async_review", 2, "ana@x", "human_reject") == "awaiting_signoff"
    assert _receive(s, "tx-2:second_signoff", 3, "bo@x", "human_approve") == "escalated"
    swept = _sweep(s, 31)  # before any Tier 2 case is past its own SLA
    assert sorted(swept.escalated) == ["tx-0:sync_review", "tx-3:sync_review"]
    assert [p.case_id for p in swept.pages] == ["tx-0:sync_review"]
    page = swept.pages[0]
    assert (page.transaction_id, page.amount) == ("tx-0", INCIDENT)
    assert (page.sla_minutes, page.overdue_minutes) == (30, 1)

    # the text is for people: rewriting it moves no page
    s.get(ReviewTask, "tx-1:async_review").status_reason = "sla_breach: looks like one"
    s.get(ReviewTask, "tx-0:sync_review").status_reason = "no decision in time"
    s.commit()
    later = NOW + timedelta(minutes=32)
    assert [p.case_id for p in paging.pages_due(s, POLICY, later)] == ["tx-0:sync_review"]

    sink = MemorySink()
    assert paging.send_pages(s, swept.pages, sink, later) == 1
    s.commit()
    assert [a.scope for a in sink.alerts] == ["tx-0:sync_review"]
    assert paging.pages_due(s, POLICY, later) == []  # paged once
    assert _sweep(s, 33).pages == []
    pages = _events(s, "tier3_page")
    assert list(pages["transaction_id"]) == ["tx-0"]
    assert pages.iloc[0]["details"]["sink"] == "MemorySink"


def test_a_note_keeps_the_case_open_with_its_sla_clock_running(db_url: str) -> None:
    s = _store(db_url, [(80.0, SYNC)])
    case = "tx-0:sync_review"
    assert _receive(s, case, 1, "ana@x", "annotate") == "annotated"
    task = s.get(ReviewTask, case)
    assert (task.status, task.exit_code, task.decision, task.reviewed_at) == (
        "pending",
        None,
        None,
        None,
    )
    assert task.sla_due_at == NOW + timedelta(minutes=POLICY.sla_minutes.sync_review)
    assert s.get(Decision, "tx-0").final_decision is None
    assert labels.labels(s).empty  # a note teaches the model nothing

    assert _sweep(s, 31).escalated == [case]  # the note did not stop the clock
    assert task.exit_code == Exit.SLA_BREACH
    breach = _events(s, "escalated").iloc[0]["sla_metadata"]
    assert (breach["actual_minutes"], breach["met"]) == (31, False)


def test_a_second_signoff_by_the_first_reviewer_is_returned_with_its_reason(
    db_url: str,
) -> None:
    s = _store(db_url, [(HIGH, ASYNC)])
    assert _receive(s, "tx-0:async_review", 1, "ana@x", "human_reject") == "awaiting_signoff"
    assert _receive(s, "tx-0:second_signoff", 2, "ana@x", "human_reject", 15) == "invalid"

    signoff = s.get(ReviewTask, "tx-0:second_signoff")
    assert (signoff.status, signoff.exit_code, signoff.decision) == ("pending", None, None)
    assert signoff.status_reason == SAME_SIGNER
    assert signoff.ls_patch["data"]["notice"] == f"Returned: {SAME_SIGNER}"
    assert signoff.ls_patch["delete_annotations"] == [2]
    first = s.get(ReviewTask, "tx-0:async_review")
    assert (first.status, first.decision, first.reviewer) == ("reviewed", "human_reject", "ana@x")
    assert s.get(Decision, "tx-0").final_decision is None  # one signature, however often
    assert labels.labels(s).empty
    invalid = _events(s, "invalid_annotation")
    assert list(invalid["actor"]) == ["ana@x"]
    assert invalid.iloc[0]["details"]["problem"] == SAME_SIGNER

    assert _receive(s, "tx-0:second_signoff", 3, "bo@x", "human_reject", 20) == "applied"
    assert s.get(Decision, "tx-0").final_decision == "human_reject"


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        ("escalated", "sla_breach: no decision within the sync_review SLA", "sla_breach"),
        ("escalated", "reviewer_escalation: escalated by a Tier 1 reviewer", "reviewer_escalation"),
        ("escalated", "signoff_disagreement: second sign-off disagrees", "signoff_disagreement"),
        ("escalated", "tier3: escalated by a Tier 2 reviewer: breach", "tier3"),
        ("escalated", "moved by hand", None),
        ("pending", "sla_breach: returned", None),  # only a case that left its queue has one
        ("reviewed", None, None),
    ],
)
def test_migration_0006_reads_exit_codes_of_stored_cases_from_their_text(
    db_url: str, status: str, reason: str | None, code: str | None
) -> None:
    cfg = alembic_config(db_url)
    command.downgrade(cfg, "0005")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        tasks = Table("review_tasks", MetaData(), autoload_with=conn)
        row = {
            "case_id": "tx-0:sync_review",
            "transaction_id": "tx-0",
            "queue": "sync_review",
            "priority": 1.0,
            "created_at": NOW,
            "sla_due_at": NOW + timedelta(minutes=30),
            "status": status,
            "attempts": 0,
            "status_reason": reason,
        }
        conn.execute(insert(tasks), [row])
    command.upgrade(cfg, "head")
    with Session(engine) as s:
        task = s.get(ReviewTask, "tx-0:sync_review")
        assert (task.status, task.status_reason, task.exit_code) == (status, reason, code)
