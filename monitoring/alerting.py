"""Alerts out: each fired rule goes to the sink and becomes an audit event, once per rule, scope
and evaluation time (a rerun of the same report never alerts twice in the trail).

The sustained rules (`monitoring.alert_rules`) keep their state in `alert_state`: an evaluation
audits what fired or resolved and queues it on the rule's row; delivery, a separate step after
that commit, offers each queued notice to every configured sink until each has taken it.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.alerts import Alert, AlertSink
from fraudloop.errors import FraudloopError
from fraudloop.policy import Policy
from fraudloop.storage import AlertStateRow, Decision, ReviewTask, read_frame
from monitoring.alert_rules import AlertState, baseline_period, evaluate, lookback, observe

ACTOR = "monitor"


def raise_alerts(session: Session, alerts: list[Alert], sink: AlertSink, as_of: datetime) -> int:
    """Send every alert, then audit them; returns how many events are new."""
    for alert in alerts:
        sink.send(alert)
    return audit.append(
        session,
        [
            audit.event(
                f"alert:{a.rule}:{a.scope}:{as_of.isoformat()}",
                "alert",
                ACTOR,
                as_of,
                message=a.message,
            )
            for a in alerts
        ],
    )


# --- the sustained rules (`monitoring.alert_rules`) against the store ---------------------------


@dataclass
class AlertDelivery:
    """What one delivery pass did: notices taken by a sink, notices some sink still owes."""

    sent: int = 0
    pending: int = 0
    failed_sinks: list[str] = field(default_factory=list)


def evaluate_rules(session: Session, policy: Policy, now: datetime) -> list[Alert]:
    """One evaluation: measure, step every rule's state, audit what fired or resolved and put it
    in the outbox, all in the caller's transaction; returns those alerts and resolutions."""
    rows = {(r.rule, r.scope): r for r in session.scalars(select(AlertStateRow))}
    states = {
        key: AlertState.model_validate(row, from_attributes=True) for key, row in rows.items()
    }
    observed = observe(
        recent_frame(session, policy, now), policy, now, baseline(session, policy, now)
    )
    moved, notices = evaluate(states, observed, policy, now)
    for key, state in moved.items():
        row = rows.setdefault(key, AlertStateRow(rule=state.rule, scope=state.scope, unsent=[]))
        for name, value in state.model_dump(exclude={"rule", "scope"}).items():
            setattr(row, name, value)
        session.add(row)
    for alert in notices:
        row = rows[(alert.rule, alert.scope)]
        row.unsent = [*row.unsent, {"alert": alert.model_dump(mode="json"), "sent_to": []}]
    session.flush()
    audit.append(session, [_alert_event(a, moved[(a.rule, a.scope)]) for a in notices])
    return notices


def deliver_alerts(session: Session, sinks: dict[str, AlertSink], now: datetime) -> AlertDelivery:
    """Offer every unsent notice to each configured sink that has not taken it, oldest first; a
    sink that fails is skipped for the rest of the pass (its notices keep their order) and
    tried again next time. Each notice reaches each sink once: never lost, never doubled."""
    result = AlertDelivery()
    failed: set[str] = set()
    rows = session.scalars(
        select(AlertStateRow).order_by(AlertStateRow.rule, AlertStateRow.scope).with_for_update()
    ).all()
    for row in rows:
        remaining = []
        for item in row.unsent:
            sent_to = _offer(Alert.model_validate(item["alert"]), item["sent_to"], sinks, failed)
            result.sent += len(sent_to) - len(item["sent_to"])
            if len(sent_to) > len(item["sent_to"]):
                row.last_sent_at = now
            if set(sinks) - set(sent_to):
                remaining.append({"alert": item["alert"], "sent_to": sent_to})
        row.unsent = remaining
        result.pending += len(remaining)
    result.failed_sinks = sorted(failed)
    return result


def _offer(
    alert: Alert, sent_to: list[str], sinks: dict[str, AlertSink], failed: set[str]
) -> list[str]:
    taken = list(sent_to)
    for name, sink in sinks.items():
        if name in taken or name in failed:
            continue
        try:
            sink.send(alert)
        except FraudloopError:
            failed.add(name)
            continue
        taken.append(name)
    return taken


def recent_frame(session: Session, policy: Policy, now: datetime) -> pd.DataFrame:
    """The decisions the rules look at: decided or reviewed in the measure period, and every
    review still open (at any age: a stalled queue must count), with their first case's times."""
    start = lookback(policy, now)
    stmt = (
        select(
            Decision.decided_at,
            Decision.route,
            Decision.recommendation,
            Decision.final_decision,
            Decision.confidence,
            Decision.amount,
            Decision.reviewed_at,
            ReviewTask.created_at.label("review_created_at"),
            ReviewTask.sla_due_at,
        )
        .outerjoin(
            ReviewTask,
            (ReviewTask.transaction_id == Decision.transaction_id)
            & ReviewTask.parent_case_id.is_(None),
        )
        .where(
            or_(
                Decision.decided_at > start,
                Decision.reviewed_at > start,
                ReviewTask.created_at.is_not(None) & Decision.reviewed_at.is_(None),
            )
        )
    )
    frame = read_frame(session, stmt)
    for column in ("decided_at", "reviewed_at", "review_created_at", "sla_due_at"):
        frame[column] = pd.to_datetime(frame[column])
    for column in ("confidence", "amount"):
        frame[column] = pd.to_numeric(frame[column])
    return frame


def baseline(session: Session, policy: Policy, now: datetime) -> float | None:
    """Mean model confidence over the baseline period (`alert_rules.baseline_period`)."""
    start, end = baseline_period(policy, now)
    mean = session.scalar(
        select(func.avg(Decision.confidence)).where(
            Decision.decided_at >= start, Decision.decided_at < end
        )
    )
    return None if mean is None else float(mean)


def _alert_event(alert: Alert, state: AlertState) -> dict[str, Any]:
    """An alert or its resolution in the audit trail, keyed on when the alert fired."""
    kind = "alert" if alert.kind == "alert" else "alert_resolved"
    fired = state.last_fired_at.isoformat() if state.last_fired_at else alert.at.isoformat()
    return audit.event(
        f"{kind}:{alert.rule}:{alert.scope}:{fired}",
        kind,
        ACTOR,
        alert.at,
        rule=alert.rule,
        scope=alert.scope,
        value=alert.value,
        threshold=alert.threshold,
        window_minutes=alert.window_minutes,
        tier=alert.tier,
        contacts=alert.contacts,
        message=alert.message,
    )
