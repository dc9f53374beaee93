"""What the QA reports read from the store, each read as narrow as its figures need.

A week of a busy store is over a million decisions: every read names its columns (never a
decision's snapshot or reasons), aggregates what it can in the database (a customer's first
payment, a terminal's known frauds), and earlier periods are read as a random sample
(`sample_decisions`) where a rate is all that is asked of them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from pandas.api.types import union_categoricals
from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, tuple_
from sqlalchemy.orm import Session

from fraudloop.policy import (
    ACTIVE_LEARNING_QUEUE,
    EXPLORATION,
    POST_VERIFY_QUEUE,
    Reports,
    Segments,
)
from fraudloop.storage import (
    AuditEvent,
    Decision,
    Label,
    ReviewTask,
    TransactionRow,
)

DECISION_COLUMNS = (
    "transaction_id",
    "decided_at",
    "tx_datetime",
    "amount",
    "score",
    "confidence",
    "route",
    "recommendation",
    "final_decision",
    "fallback",
    "model_version",
    "policy_version",
    "reviewer",
    "reviewed_at",
)
TIMES = ("decided_at", "tx_datetime", "reviewed_at", "created_at", "sla_due_at", "known_at")
CATEGORIES = ("route", "recommendation", "final_decision", "model_version", "policy_version")
NUMBERS = ("amount", "score", "confidence", "propensity", "label_is_fraud")  # NULL-able floats
# what the week's events section reads from the audit trail
REPORTED_EVENTS = (
    "alert",
    "alert_resolved",
    "promotion",
    "promotion_rejected",
    "promotion_manual",
    "rollback",
    "tier3_page",
)


CHUNK_ROWS = 100_000  # rows a read turns into a frame at a time (bounds the driver's rows)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Times as datetimes, repeated labels as categories (a week's frame is a tenth the size)."""
    for column in frame.columns:
        if column in TIMES:
            frame[column] = pd.to_datetime(frame[column])
        elif column in CATEGORIES:
            frame[column] = frame[column].astype("category")
        elif column in NUMBERS:
            frame[column] = frame[column].astype(float)  # a chunk of NULLs is no object column
    return frame


def read_typed(session: Session, stmt: Any) -> pd.DataFrame:
    """`storage.read_frame`, a chunk of rows at a time, each chunk typed before the next is
    read: a week of decisions never exists as a million rows of Python objects at once."""
    result = session.connection().execute(stmt.execution_options(yield_per=CHUNK_ROWS))
    names = list(result.keys())
    parts = [_typed(pd.DataFrame(rows, columns=names)) for rows in result.partitions()]
    if not parts:
        return _typed(pd.DataFrame(columns=names))
    merged = pd.concat(parts, ignore_index=True)
    for column in CATEGORIES:  # categories differ between chunks: concat made them objects
        if column in merged.columns and len(parts) > 1:
            merged[column] = union_categoricals([p[column].astype("category").array for p in parts])
    return merged


def _decisions_stmt() -> Select[tuple[object, ...]]:
    columns = [getattr(Decision, c) for c in DECISION_COLUMNS]
    return select(*columns, TransactionRow.customer_id, TransactionRow.terminal_id).outerjoin(
        TransactionRow, TransactionRow.transaction_id == Decision.transaction_id
    )


def _in_period(since: datetime, until: datetime) -> ColumnElement[bool]:
    """A report's period holds the payments made in it (by the indexed transaction time)."""
    return and_(Decision.tx_datetime >= since, Decision.tx_datetime < until)


def decisions(session: Session, since: datetime, until: datetime) -> pd.DataFrame:
    """Decisions of the payments made in [since, until), with each one's customer and terminal."""
    stmt = _decisions_stmt().where(_in_period(since, until))
    return read_typed(session, stmt)


def sample_decisions(session: Session, since: datetime, until: datetime, n: int) -> pd.DataFrame:
    """At most `n` decisions of [since, until) drawn at random (all of them when fewer), each
    with its labels (columns `label_is_fraud`, `label_known_at`; one row per label)."""
    columns = ("transaction_id", "tx_datetime", "score", "route", "final_decision", "amount")
    drawn = (
        select(*[getattr(Decision, c) for c in columns])
        .where(_in_period(since, until))
        .order_by(func.random())
        .limit(n)
        .subquery()
    )
    stmt = select(
        drawn, Label.is_fraud.label("label_is_fraud"), Label.known_at.label("label_known_at")
    ).outerjoin(Label, Label.transaction_id == drawn.c.transaction_id)
    frame = read_typed(session, stmt)
    for column in ("tx_datetime", "label_known_at"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


def count_decisions(session: Session, since: datetime, until: datetime) -> int:
    return int(session.scalar(select(func.count()).where(_in_period(since, until))) or 0)


def policy_before(session: Session, since: datetime) -> str | None:
    """The policy version of the last decision before the period."""
    stmt = (
        select(Decision.policy_version)
        .where(Decision.tx_datetime < since)
        .order_by(Decision.tx_datetime.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def decision_labels(session: Session, since: datetime, until: datetime) -> pd.DataFrame:
    """Every label of the period's decisions, whenever it became known."""
    stmt = (
        select(Label.transaction_id, Label.is_fraud, Label.known_at, Label.source)
        .join(Decision, Decision.transaction_id == Label.transaction_id)
        .where(_in_period(since, until))
    )
    return read_typed(session, stmt)


CASE_COLUMNS = (
    "case_id",
    "transaction_id",
    "queue",
    "created_at",
    "sla_due_at",
    "status",
    "decision",
    "reviewer",
    "reviewed_at",
    "parent_case_id",
    "exit_code",
)


def _open_within(since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(
        ReviewTask.created_at < until,
        or_(ReviewTask.reviewed_at.is_(None), ReviewTask.reviewed_at >= since),
    )


def _parents(since: datetime, until: datetime) -> Select[str | None]:
    """The cases the period's follow-ups came from: a sign-off is judged against its first."""
    return select(ReviewTask.parent_case_id).where(
        _open_within(since, until), ReviewTask.parent_case_id.is_not(None)
    )


def review_cases(session: Session, since: datetime, until: datetime) -> pd.DataFrame:
    """Every review case open at some time in [since, until), of every queue and tier (Tier 2,
    sign-off and active learning too), and the first cases of its sign-offs, with its transaction's decision as the router made it
    (`route`, `recommendation`, `amount`, `score`) and as it ended (`final_decision`,
    `final_at`)."""
    stmt = (
        select(
            *[getattr(ReviewTask, c) for c in CASE_COLUMNS],
            Decision.route,
            Decision.recommendation,
            Decision.amount,
            Decision.score,
            Decision.tx_datetime,
            Decision.final_decision,
            Decision.reviewed_at.label("final_at"),
        )
        .join(Decision, Decision.transaction_id == ReviewTask.transaction_id)
        .where(or_(_open_within(since, until), ReviewTask.case_id.in_(_parents(since, until))))
    )
    frame = read_typed(session, stmt)
    frame["final_at"] = pd.to_datetime(frame["final_at"])
    return frame


def case_labels(session: Session, since: datetime, until: datetime) -> pd.DataFrame:
    """Labels of the transactions whose cases were decided in [since, until)."""
    decided = (
        select(ReviewTask.transaction_id)
        .where(ReviewTask.reviewed_at >= since, ReviewTask.reviewed_at < until)
        .distinct()
        .subquery()
    )
    stmt = select(Label.transaction_id, Label.is_fraud, Label.known_at, Label.source).join(
        decided, decided.c.transaction_id == Label.transaction_id
    )
    return read_typed(session, stmt)


def audit_events(
    session: Session, since: datetime, until: datetime, types: Sequence[str] = REPORTED_EVENTS
) -> pd.DataFrame:
    """Audit events of `types` in [since, until), oldest first, without their snapshots."""
    stmt = (
        select(
            AuditEvent.timestamp,
            AuditEvent.event_type,
            AuditEvent.actor,
            AuditEvent.transaction_id,
            AuditEvent.model_version,
            AuditEvent.decision,
            AuditEvent.details,
        )
        .where(AuditEvent.event_type.in_(list(types)))
        .where(AuditEvent.timestamp >= since, AuditEvent.timestamp < until)
        .order_by(AuditEvent.seq)
    )
    frame = read_typed(session, stmt)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


def count_events(session: Session, event_type: str) -> int:
    return int(session.scalar(select(func.count()).where(AuditEvent.event_type == event_type)) or 0)


def exploration_answers(session: Session, since: datetime, until: datetime) -> pd.DataFrame:
    """Answered random exploration picks of automatic decisions made in [since, until): the
    automatic decision, the label the answer gave, the pick's chance to be drawn."""
    labelled = and_(Label.transaction_id == ReviewTask.transaction_id, Label.source == EXPLORATION)
    stmt = (
        select(ReviewTask.propensity, Decision.final_decision, Label.is_fraud)
        .join(Decision, Decision.transaction_id == ReviewTask.transaction_id)
        .join(Label, labelled)
        .where(ReviewTask.queue == ACTIVE_LEARNING_QUEUE, ReviewTask.strategy == EXPLORATION)
        .where(_in_period(since, until))
    )
    return read_typed(session, stmt)


def audit_sample(session: Session, since: datetime, until: datetime) -> pd.DataFrame:
    """The post-verify audit cases drawn in [since, until) (each week's sample is drawn at one
    moment, after its week: a sample is never split between two periods): the stratum
    (`strategy`), the chance to be drawn, the label the answer gave (NaN while unanswered)."""
    labelled = and_(
        Label.transaction_id == ReviewTask.transaction_id, Label.source == POST_VERIFY_QUEUE
    )
    stmt = (
        select(ReviewTask.strategy, ReviewTask.propensity, Label.is_fraud)
        .outerjoin(Label, labelled)
        .where(ReviewTask.queue == POST_VERIFY_QUEUE)
        .where(ReviewTask.created_at >= since, ReviewTask.created_at < until)
    )
    frame = read_typed(session, stmt)
    frame["is_fraud"] = frame["is_fraud"].astype(float)
    return frame


def _week_rows(since: datetime, until: datetime) -> Select[str, str]:
    return select(TransactionRow.customer_id, TransactionRow.terminal_id).where(
        TransactionRow.tx_datetime >= since, TransactionRow.tx_datetime < until
    )


def customer_first_seen(session: Session, since: datetime, until: datetime) -> pd.Series:
    """The first stored payment of each customer who paid in the period (tenure's start)."""
    customers = _week_rows(since, until).with_only_columns(TransactionRow.customer_id).distinct()
    stmt = (
        select(TransactionRow.customer_id, func.min(TransactionRow.tx_datetime).label("first"))
        .where(TransactionRow.customer_id.in_(customers))
        .group_by(TransactionRow.customer_id)
    )
    frame = read_typed(session, stmt)
    return pd.Series(pd.to_datetime(frame["first"]).to_numpy(), index=frame["customer_id"])


def pair_first_seen(
    session: Session, since: datetime, until: datetime, lookback_days: int
) -> pd.DataFrame:
    """The first payment of each (customer, terminal) pair of the period within `lookback_days`
    before it: a payment is at a known terminal when its pair was seen before it."""
    pairs = _week_rows(since, until).distinct()
    c, t = TransactionRow.customer_id, TransactionRow.terminal_id
    stmt = (
        select(c, t, func.min(TransactionRow.tx_datetime).label("pair_first"))
        .where(TransactionRow.tx_datetime >= since - timedelta(days=lookback_days))
        .where(TransactionRow.tx_datetime < until)
        .where(tuple_(c, t).in_(pairs))
        .group_by(c, t)
    )
    frame = read_typed(session, stmt)
    frame["pair_first"] = pd.to_datetime(frame["pair_first"])
    return frame


def terminal_risk(session: Session, since: datetime, until: datetime, seg: Segments) -> pd.Series:
    """Each terminal of the period: the share of its payments in the `terminal_risk_days`
    before it that were known to be fraud by the period's start."""
    start = since - timedelta(days=seg.terminal_risk_days)
    frauds = (
        select(Label.transaction_id)
        .where(Label.is_fraud == 1, Label.known_at < since)
        .distinct()
        .subquery()
    )
    terminals = _week_rows(since, until).with_only_columns(TransactionRow.terminal_id).distinct()
    stmt = (
        select(
            TransactionRow.terminal_id,
            func.count().label("n"),
            func.sum(case((frauds.c.transaction_id.is_not(None), 1), else_=0)).label("frauds"),
        )
        .outerjoin(frauds, frauds.c.transaction_id == TransactionRow.transaction_id)
        .where(TransactionRow.tx_datetime >= start, TransactionRow.tx_datetime < since)
        .where(TransactionRow.terminal_id.in_(terminals))
        .group_by(TransactionRow.terminal_id)
    )
    frame = read_typed(session, stmt)
    share = frame["frauds"].astype(float) / frame["n"].astype(float)
    return pd.Series(share.to_numpy(), index=frame["terminal_id"])


@dataclass
class Period:
    """What one period's figures read: its decisions with their labels, the review cases open
    in it, its audit events, the answered exploration picks of its automatic decisions, the
    post-verify audit sample drawn in it."""

    start: datetime
    end: datetime
    decisions: pd.DataFrame
    labels: pd.DataFrame
    cases: pd.DataFrame
    events: pd.DataFrame
    exploration: pd.DataFrame
    audit: pd.DataFrame


@dataclass
class SegmentInputs:
    first_seen: pd.Series  # by customer
    pair_first: pd.DataFrame  # customer_id, terminal_id, pair_first
    terminal_risk: pd.Series  # by terminal


@dataclass
class Sample:
    """An earlier period read as a random sample (`sample_decisions`), and its full size."""

    start: datetime
    end: datetime
    decisions: int
    rows: pd.DataFrame


def read_period(session: Session, start: datetime, end: datetime) -> Period:
    return Period(
        start=start,
        end=end,
        decisions=decisions(session, start, end),
        labels=decision_labels(session, start, end),
        cases=review_cases(session, start, end),
        events=audit_events(session, start, end),
        exploration=exploration_answers(session, start, end),
        audit=audit_sample(session, start, end),
    )


def read_segments(session: Session, start: datetime, end: datetime, seg: Segments) -> SegmentInputs:
    return SegmentInputs(
        first_seen=customer_first_seen(session, start, end),
        pair_first=pair_first_seen(session, start, end, seg.known_terminal_days),
        terminal_risk=terminal_risk(session, start, end, seg),
    )


def read_samples(session: Session, end: datetime, days: int, weeks: int, rows: int) -> list[Sample]:
    """The `weeks` periods of `days` before `end`, oldest first, each sampled to `rows`."""
    out = []
    for i in range(weeks, 0, -1):
        start = end - timedelta(days=days * i)
        stop = start + timedelta(days=days)
        out.append(
            Sample(
                start=start,
                end=stop,
                decisions=count_decisions(session, start, stop),
                rows=sample_decisions(session, start, stop, rows),
            )
        )
    return out


@dataclass
class WeeklyData:
    """Everything the weekly QA report reads, in one pass over the store."""

    week: Period
    previous: Period
    segments: SegmentInputs
    reviewer_cases: pd.DataFrame  # the cases of `report.reviewer_days`, for the approvals check
    reviewer_labels: pd.DataFrame
    earlier: list[Sample]  # the weeks before, sampled, for the label-maturity curve
    policy_before: str | None  # the policy version in force before the week


def read_weekly(session: Session, report: Reports, as_of: datetime) -> WeeklyData:
    week = timedelta(days=report.weekly_days)
    start = as_of - week
    since = as_of - timedelta(days=report.reviewer_days)
    return WeeklyData(
        week=read_period(session, start, as_of),
        previous=read_period(session, start - week, start),
        segments=read_segments(session, start, as_of, report.segments),
        reviewer_cases=review_cases(session, since, as_of),
        reviewer_labels=case_labels(session, since, as_of),
        earlier=read_samples(
            session, start, report.weekly_days, report.maturity_weeks, report.sample_rows
        ),
        policy_before=policy_before(session, start),
    )
