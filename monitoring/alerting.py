"""Alerts out: each fired rule goes to the sink and becomes an audit event, once per rule, scope
and evaluation time (a rerun of the same report never alerts twice in the trail)."""

from datetime import datetime

from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.alerts import Alert, AlertSink

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
