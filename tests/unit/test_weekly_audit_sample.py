"""The weekly QA report's audit-sample section on the hand-made store of `tests/qa_store.py`:
the week before the report's (`BEFORE`: three auto-allowed, one auto-blocked) is sampled when
the report's week begins, one answer found an auto-allowed payment to be fraud."""

from datetime import timedelta

import pytest
from qa_store import AS_OF, BEFORE, POLICY, R1, build_store
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop.policy import POST_VERIFY_QUEUE, AuditSample
from fraudloop.storage import ReviewTask, make_engine
from labeling.review import answers
from monitoring import qa_data
from monitoring.document import Table
from monitoring.weekly import WeeklyReport, weekly_document, weekly_report
from pipeline.audit_sample import open_week

SAMPLE = AuditSample(mode="post_verify", auto_approve=2, auto_reject=1, seed=3)
REPORT = POLICY.report.model_copy(update={"audit_sample": SAMPLE})
AUDITED = POLICY.model_copy(update={"report": REPORT})
WEEK_START = AS_OF - timedelta(days=POLICY.report.weekly_days)
DRAWN_AT = WEEK_START + timedelta(hours=1)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory: pytest.TempPathFactory) -> tuple[qa_data.WeeklyData, WeeklyReport]:
    url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'store.db'}"
    build_store(url)
    with Session(make_engine(url), expire_on_commit=False) as s, s.begin():
        opened = open_week(s, AUDITED, WEEK_START, DRAWN_AT)
        assert opened.opened == {"auto_approve": 2, "auto_reject": 1}
    with Session(make_engine(url), expire_on_commit=False) as s, s.begin():
        stmt = select(ReviewTask).where(
            ReviewTask.queue == POST_VERIFY_QUEUE, ReviewTask.strategy == "auto_approve"
        )
        case = s.scalars(stmt.order_by(ReviewTask.case_id)).first()
        assert case is not None and case.transaction_id in BEFORE
        answer = answers.Answer(
            case_id=case.case_id,
            annotation_id=101,
            updated_at=(DRAWN_AT + timedelta(hours=2)).isoformat(),
            reviewer=R1,
            decision="human_reject",
            rationale="the cardholder disowns it",
        )
        assert answers.receive(s, answer, AUDITED, DRAWN_AT + timedelta(hours=2)) == "applied"
    with Session(make_engine(url)) as s:
        data = qa_data.read_weekly(s, AUDITED.report, AS_OF)
    kept = tmp_path_factory.mktemp("policies")
    (kept / f"{POLICY.version}.yaml").write_text(f'version: "{POLICY.version}"\n')
    return data, weekly_report(data, AUDITED, AS_OF, kept, "fraud-detector v4")


def test_the_sample_drawn_this_week_is_estimated_per_stratum(
    sampled: tuple[qa_data.WeeklyData, WeeklyReport],
) -> None:
    _, report = sampled
    approve, reject, overall = report.audit
    assert (approve.population, approve.sampled, approve.answered, approve.errors) == (3, 2, 1, 1)
    assert approve.estimate.rate == 1.0 and approve.estimate.low is not None
    assert approve.estimate.low < 1.0
    assert (reject.population, reject.sampled, reject.answered) == (1, 1, 0)
    assert reject.estimate.rate is None
    assert (overall.population, overall.sampled, overall.answered) == (4, 3, 1)
    assert all(a.sampled == 0 for a in report.audit_before)  # nothing drawn the week before


def test_the_document_has_the_audit_section(
    sampled: tuple[qa_data.WeeklyData, WeeklyReport],
) -> None:
    data, report = sampled
    doc = weekly_document(report, data.week, AUDITED, [])
    (section,) = [s for s in doc.sections if s.title == "Audit sample (post-verify)"]
    titles = [s.title for s in doc.sections]
    assert titles.index(section.title) == titles.index("Model quality on matured labels") + 1
    (table,) = [b for b in section.blocks if isinstance(b, Table)]
    assert len(table.rows) == 6  # noqa: PLR2004 - two strata and all, for two weeks
    assert table.rows[0][:6] == ["this week", "fraud among auto-allowed", "3", "2", "1", "1"]
