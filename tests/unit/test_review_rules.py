"""The review domain's pure rules: a case's SLA record, its queue priority, scrubbed text."""

import json
from datetime import datetime, timedelta

import pytest

from fraudloop.policy import load_policy, queue_priority
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import ReviewTask
from labeling.review.answers import Answer
from labeling.review.cases import scrub, sla_metadata, tier

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
CREATED = datetime(2026, 3, 1, 12, 0)


def _task(queue: str = "sync_review", sla_minutes: float = 30) -> ReviewTask:
    """A case as the store holds it (never added to a session: the rules read fields only)."""
    return ReviewTask(
        case_id=f"tx-1:{queue}",
        transaction_id="tx-1",
        queue=queue,
        priority=1.0,
        created_at=CREATED,
        sla_due_at=CREATED + timedelta(minutes=sla_minutes),
    )


def test_sla_metadata_records_expected_and_actual_minutes_of_the_case() -> None:
    meta = sla_metadata(_task(), POLICY, CREATED + timedelta(minutes=12, seconds=30))
    assert meta == {
        "expected_minutes": 30.0,
        "actual_minutes": 12.5,
        "queue": "sync_review",
        "tier": 1,
        "due_at": "2026-03-01T12:30:00",
        "met": True,
    }
    assert json.loads(json.dumps(meta)) == meta  # audit JSON as it is: nothing to convert


@pytest.mark.parametrize(
    ("after_due", "met"),
    [
        (timedelta(seconds=-1), True),
        (timedelta(0), True),  # answered at the due time: met
        (timedelta(seconds=1), False),
        (timedelta(hours=5), False),
    ],
)
def test_sla_is_met_up_to_and_including_the_due_time(after_due: timedelta, met: bool) -> None:
    task = _task(sla_minutes=30)
    meta = sla_metadata(task, POLICY, task.sla_due_at + after_due)
    assert meta["met"] is met
    assert meta["actual_minutes"] == round(30 + after_due.total_seconds() / 60, 2)


@pytest.mark.parametrize(
    ("queue", "expected"),
    [("sync_review", 1), ("async_review", 1), ("second_signoff", 1), ("tier2", 2), ("gone", 1)],
)
def test_a_case_is_in_its_queues_tier_and_tier_1_outside_the_policy(
    queue: str, expected: int
) -> None:
    task = _task(queue, POLICY.sla_minutes.tier2)
    assert tier(task, POLICY) == expected
    assert sla_metadata(task, POLICY, CREATED)["tier"] == expected


@pytest.mark.parametrize(
    ("waiting", "hours"),
    [
        (timedelta(0), 0),
        (timedelta(hours=1) - timedelta(microseconds=1), 0),
        (timedelta(hours=1), 1),
        (timedelta(hours=1, minutes=59, seconds=59), 1),
        (timedelta(hours=2), 2),
        (timedelta(days=1, minutes=30), 24),
        (timedelta(minutes=-5), 0),  # a clock a little behind the decision never lowers it
    ],
)
def test_queue_priority_ages_by_whole_hours_waiting(waiting: timedelta, hours: int) -> None:
    assert queue_priority(0.8, 250.0, waiting, 0.5) == pytest.approx(200.0 * (1 + 0.5 * hours))


def test_queue_priority_is_expected_impact_and_a_missing_score_counts_as_fraud() -> None:
    assert queue_priority(0.8, 250.0) == 200.0
    assert queue_priority(None, 250.0) == 250.0  # fallback rules: no score
    assert queue_priority(0.8, 250.0, timedelta(hours=3)) == 200.0  # no boost, no ageing
    assert queue_priority(0.123456789, 1.0) == 0.1235  # rounded: equal ranks compare equal
    assert queue_priority(0.9, 10.0, timedelta(hours=10), 0.5) < queue_priority(0.5, 1_000.0)


def test_an_answers_key_is_its_kind_case_annotation_and_server_stamp() -> None:
    answer = Answer(
        case_id="tx-1:tier2", annotation_id=7, updated_at="2026-03-01T12:10:00Z", reviewer="a@x"
    )
    assert answer.key("review") == "review:tx-1:tier2:7:2026-03-01T12:10:00Z"
    edited = answer.model_copy(update={"updated_at": "2026-03-01T12:11:00Z"})
    assert edited.key("review") != answer.key("review")  # an edited annotation is a new answer


def test_scrub_masks_what_looks_like_pii_in_free_text() -> None:
    text = "mail jane.doe@example.com, ip 203.0.113.77, ref 2026-03-01 12:15"
    assert scrub(text) == "mail [redacted], ip [redacted], ref 2026-03-01 12:15"
    assert scrub("card 4000000000001234") == "card [redacted]"


@pytest.mark.parametrize("card", ["4000 0000 0000 1234", "4000-0000-0000-1234"])
def test_scrub_keeps_the_text_around_a_masked_card_number(card: str) -> None:
    assert scrub(f"card {card} seen twice") == "card [redacted] seen twice"
