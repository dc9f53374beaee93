"""Alert evaluation every few minutes: SPEC's sustained rules, then delivery to every sink.

Evaluation (state, audit, outbox) commits before anything is sent, so a sink outage never
loses an alert: the next run offers it again. A run that leaves an alert undelivered fails, so
the Prefect UI and `fraudloop doctor` show that alerting itself is broken.
"""

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from fraudloop.alerts import Alert, configured_sinks
from fraudloop.errors import ServiceUnavailable
from fraudloop.storage import open_session
from monitoring.alerting import AlertDelivery, deliver_alerts, evaluate_rules


@task(cache_policy=NO_CACHE)
def evaluate(rt: Runtime, now: datetime) -> list[Alert]:
    with open_session(rt.db_url) as s, s.begin():
        return evaluate_rules(s, rt.policy, now)


@task(cache_policy=NO_CACHE)
def deliver(rt: Runtime, now: datetime) -> AlertDelivery:
    sinks = configured_sinks(rt.settings.alert_sinks)
    with open_session(rt.db_url) as s, s.begin():
        return deliver_alerts(s, sinks, now)


@flow(name="evaluate-alerts")
def alerts_flow(now: datetime | None = None) -> dict[str, Any]:
    """Evaluate the rules at `now` (default: the clock), deliver what is unsent."""
    rt = runtime()
    now = now or rt.clock()
    notices = evaluate(rt, now)
    delivery = deliver(rt, now)
    for notice in notices:
        get_run_logger().info(
            "%s %s [%s]: %s", notice.kind, notice.rule, notice.scope, notice.message
        )
    if delivery.pending:
        raise ServiceUnavailable(
            f"{delivery.pending} alert(s) not delivered: {', '.join(delivery.failed_sinks)} "
            "did not take them; they are kept and offered again on the next run"
        )
    return {
        "alerts": sum(n.kind == "alert" for n in notices),
        "resolutions": sum(n.kind == "resolution" for n in notices),
        "sent": delivery.sent,
    }
