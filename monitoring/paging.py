"""Tier 3 pages: incidents from the SLA sweep go out through an alert sink, then into the audit.

A page is recorded only after the sink took it, so a sink outage means the next sweep pages
again (at least once), never that an incident goes unpaged.
"""

from datetime import datetime

from sqlalchemy.orm import Session

from fraudloop.errors import ServiceUnavailable
from fraudloop.tiers import Page, record_page
from monitoring.alerts import Alert, AlertSink


def page_alert(page: Page, now: datetime) -> Alert:
    return Alert(
        rule="tier3_page",
        scope=page.case_id,
        value=page.overdue_minutes,
        threshold=page.sla_minutes,
        window_minutes=None,
        at=now,
        message=f"Tier 3 page: {page.reason}",
    )


def send_pages(session: Session, pages: list[Page], sink: AlertSink, now: datetime) -> int:
    """Send each page and audit it; stops at the first sink failure (the rest page next time)."""
    sent = 0
    for page in pages:
        try:
            sink.send(page_alert(page, now))
        except ServiceUnavailable:
            break
        record_page(session, page, type(sink).__name__, now)
        sent += 1
    return sent
