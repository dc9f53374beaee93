"""The weekly QA report's numbers on the hand-made store of `tests/qa_store.py`, where every
answer is known (the week, its transactions and what each is for are described there)."""

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from qa_store import AS_OF, POLICY, R1, R2, SENIOR, build_store
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.settings import Settings
from fraudloop.storage import make_engine, migrate
from monitoring import qa_data, weekly
from monitoring.document import Text
from monitoring.summary import loop_summary
from monitoring.weekly import WeeklyReport, weekly_report


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('qa') / 'store.db'}"
    build_store(url)
    return url


@pytest.fixture(scope="module")
def data(store: str) -> qa_data.WeeklyData:
    with Session(make_engine(store)) as s:
        return qa_data.read_weekly(s, POLICY.report, AS_OF)


@pytest.fixture(scope="module")
def report(data: qa_data.WeeklyData, tmp_path_factory: pytest.TempPathFactory) -> WeeklyReport:
    kept = tmp_path_factory.mktemp("policies")
    (kept / "2026.11.9.yaml").write_text('version: "2026.11.9"\nreview: {daily_budget: 300}\n')
    (kept / f"{POLICY.version}.yaml").write_text(
        f'version: "{POLICY.version}"\nreview: {{daily_budget: 400}}\n'
    )
    return weekly_report(data, POLICY, AS_OF, kept, "fraud-detector v4")


def test_headline_counts_and_shares(report: WeeklyReport) -> None:
    h, before = report.headline, report.previous
    assert h.decisions == 15 and before.decisions == 4
    assert h.allow_share == pytest.approx(5 / 15)
    assert h.block_share == pytest.approx(3 / 15)
    assert h.review_share == pytest.approx(7 / 15)
    assert h.fraud_caught == 3  # r1, h1, h2: declined and known fraud
    assert h.amount_prevented == pytest.approx(100 + 2000 + 3000)
    assert h.expected_fraud_caught == pytest.approx(0.97 + 0.99 + 0.98 + 0.80 + 0.90 + 0.88)
    assert h.override_rate == pytest.approx(2 / 5)  # r2 and r3 of 5 final human decisions
    # committed queues (not the active-learning pick): 9 closed, 7 on time, 1 open overdue
    assert h.sla_compliance == pytest.approx(7 / 10)
    assert before.block_share == pytest.approx(1 / 4)


def test_model_quality_on_matured_labels(report: WeeklyReport) -> None:
    q = report.quality
    assert (q.known, q.pending, q.never, q.fraud_known) == (7, 6, 2, 6)
    assert (q.precision_blocks.hits, q.precision_blocks.n) == (0, 1)  # b3, found legit
    assert (q.precision_reviews.hits, q.precision_reviews.n) == (5, 5)
    assert (q.recall_labels.hits, q.recall_labels.n) == (3, 6)
    assert q.recall_exploration is None  # no exploration answer on an auto-allow
    assert q.brier is not None and q.average_precision is not None
    assert sum(b.n for b in q.reliability) == 7
    legit_among_blocked = next(m for m in report.misses if m.decision == "auto_reject")
    assert (legit_among_blocked.answered, legit_among_blocked.misses) == (1, 1)
    assert legit_among_blocked.estimate.represented == pytest.approx(2.0)  # 1 / propensity


def _error_row(report: WeeklyReport, segment: str, band: str) -> dict[str, object]:
    return next(
        r for r in report.errors if str(r["segment"]).startswith(segment) and r["band"] == band
    )


def test_false_declines_and_misses_by_segment(report: WeeklyReport) -> None:
    mid = _error_row(report, "amount", "50-200")
    assert (mid["fraud known"], mid["missed fraud"]) == (4, 3)  # a5, r2, r3 of a5, r1, r2, r3
    assert mid["miss rate"] == pytest.approx(0.75)
    high = _error_row(report, "amount", "200-1,000")
    assert (high["legit known"], high["false declines"], high["outcome unknown"]) == (1, 1, 2)
    assert _error_row(report, "terminal", "known")["decisions"] == 1  # p1: c1 at T1 again
    assert _error_row(report, "customer tenure", "30-90")["decisions"] == 2  # c1's a1, p1
    assert _error_row(report, "hour", "18 and up")["decisions"] == 1


def test_latency_per_queue_and_tier_includes_tier2_and_signoff(report: WeeklyReport) -> None:
    by = {r.queue: r for r in report.latency}
    tier2, signoff, async_ = by["tier2"], by["second_signoff"], by["async_review"]
    assert (tier2.closed, tier2.median_minutes, tier2.open_overdue) == (1, 50.0, 1)
    assert tier2.compliance == pytest.approx(1 / 2)
    assert (signoff.closed, signoff.median_minutes, signoff.compliance) == (2, 22.5, 1.0)
    assert (async_.closed, async_.on_time, async_.median_minutes) == (4, 2, 105.0)
    assert by["Tier 1, all queues"].compliance == pytest.approx(7 / 9)


def test_overrides_by_queue_direction_and_reviewer(report: WeeklyReport) -> None:
    queues = {k: (v.hits, v.n) for k, v in report.overrides_by_queue}
    assert queues == {
        "async_review": (2, 3),
        "sync_review": (0, 2),
        "second_signoff": (1, 2),
        "tier2": (0, 1),
        "active_learning": (1, 1),
    }
    directions = dict(report.overrides_by_direction)
    assert directions["model said block or review, the reviewer allowed"] == 4
    assert directions["model said allow, the reviewer found fraud"] == 0
    reviewers = {k: (v.hits, v.n) for k, v in report.overrides_by_reviewer}
    assert reviewers == {R1: (3, 6), R2: (1, 2), SENIOR: (0, 1)}


def test_signoff_agreement_and_approvals_against_chargebacks(report: WeeklyReport) -> None:
    assert (report.signoff_agreement.hits, report.signoff_agreement.n) == (1, 2)
    checks = {c.reviewer: c for c in report.reviewer_checks}
    ana = checks[R1]  # approved b3, r2, r3; r2 and r3 were charged back
    assert (ana.approvals, ana.checked, ana.charged_back) == (3, 2, 2)
    assert ana.share.rate == pytest.approx(1.0)
    assert (checks[R2].approvals, checks[R2].checked) == (1, 0)  # too recent to know


def test_escalations_and_time_to_resolution(report: WeeklyReport) -> None:
    by = {e.reason: e for e in report.escalations}
    assert (by["signoff_disagreement"].escalated, by["signoff_disagreement"].resolved) == (1, 1)
    assert by["signoff_disagreement"].median_hours == pytest.approx(50 / 60)
    assert (by["sla_breach"].escalated, by["sla_breach"].resolved) == (1, 0)


def test_queue_length_and_throughput(report: WeeklyReport) -> None:
    load = {q.queue: q for q in report.queue_load}
    assert load["tier2"].open_at_end == 1  # s1's Tier 2 case
    assert load["async_review"].open_at_end == 1  # p1
    assert load["async_review"].max_open == 4  # r1, r2, r3, s1 between 10:00 and 10:30
    assert load["async_review"].closed == 4
    assert report.headline.decisions_per_second == pytest.approx(15 / (7 * 86_400))


def test_events_of_the_week(report: WeeklyReport) -> None:
    assert [row[1] for row in report.alerts] == ["fired", "resolved"]
    assert [row[1] for row in report.model_moves] == ["promotion", "rollback"]
    assert report.model_moves[0][2:4] == ["v5", "v4"]
    change = report.policy_changes[0]
    assert (change.version, change.previous) == (POLICY.version, "2026.11.9")
    assert change.diff is not None and "+review: {daily_budget: 400}" in change.diff


def test_cbpe_from_the_scores_and_the_week_before(report: WeeklyReport) -> None:
    flagged = [0.97, 0.99, 0.98, 0.80, 0.80, 0.82, 0.90, 0.88, 0.80, 0.80]
    missed = [0.05] * 4 + [0.30]
    assert report.estimate.precision == pytest.approx(sum(flagged) / 10)
    assert report.estimate.recall == pytest.approx(sum(flagged) / (sum(flagged) + sum(missed)))
    (before,) = report.maturity  # the only earlier week with decisions
    assert before.estimate.precision == pytest.approx(0.99)
    assert [p.lag_days for p in before.realised] == list(range(8))
    assert before.realised[0].known_share == pytest.approx(1 / 4)  # o1's chargeback only
    assert before.realised[-1].known_share == pytest.approx(3 / 4)  # o2, o3 matured legit
    assert before.realised[-1].recall == 0.0  # o1 was allowed
    assert before.recall_error == pytest.approx(0.99 / (0.99 + 0.15))


def test_summary_escalated_equals_the_escalation_events(store: str, tmp_path: Path) -> None:
    with Session(make_engine(store)) as s:
        counts = loop_summary(s, Settings(home=tmp_path), [], {})["counts"]
        events = audit.trail(s)
    assert counts["escalated"] == int((events["event_type"] == "escalated").sum()) == 2


def test_a_read_in_chunks_is_the_read_in_one(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Session(make_engine(store)) as s:
        whole = qa_data.decisions(s, AS_OF - timedelta(days=14), AS_OF)
        monkeypatch.setattr(qa_data, "CHUNK_ROWS", 4)
        chunked = qa_data.decisions(s, AS_OF - timedelta(days=14), AS_OF)
    assert len(whole) == 19
    pd.testing.assert_frame_equal(chunked, whole, check_categorical=False)
    assert chunked["route"].dtype == "category" and chunked["score"].dtype == float


@pytest.mark.integration
@pytest.mark.postgres
def test_postgresql_gives_the_same_report(
    pg_url: str, report: WeeklyReport, tmp_path: Path
) -> None:
    migrate(pg_url)
    build_store(pg_url)
    with Session(make_engine(pg_url)) as s:
        data = qa_data.read_weekly(s, POLICY.report, AS_OF)
    again = weekly_report(data, POLICY, AS_OF, tmp_path, "fraud-detector v4")
    skip = {"policy_changes", "errors"}  # the policy texts are per test; errors hold NaN
    assert again.model_dump(exclude=skip) == report.model_dump(exclude=skip)
    pd.testing.assert_frame_equal(pd.DataFrame(again.errors), pd.DataFrame(report.errors))


def test_a_week_without_exploration_answers_points_to_the_audit_sample(
    report: WeeklyReport,
) -> None:
    def texts(rep: WeeklyReport) -> list[str]:
        return [b.text for b in weekly._quality_section(rep, 0.95).blocks if isinstance(b, Text)]

    assert weekly.NO_EXPLORATION not in texts(report)  # the store's week has exploration answers
    unexplored = [m.model_copy(update={"answered": 0}) for m in report.misses]
    assert weekly.NO_EXPLORATION in texts(report.model_copy(update={"misses": unexplored}))
