"""The outbox to Label Studio, which scoring and label sync both drain. Kept apart from the
model's tasks: a sync run's process then never imports the model stack."""

from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime
from fraudloop.alerts import LogSink
from fraudloop.storage import open_session
from labeling.outbox import DeliveryResult, deliver_by_policy, held_alerts
from monitoring.alerting import raise_alerts


@task(cache_policy=NO_CACHE)
def deliver_reviews(rt: Runtime, now: datetime) -> DeliveryResult:
    """Outbox to Label Studio; if it is down the cases stay pending and a later run delivers them."""
    try:
        client = rt.labelstudio()
        projects = rt.projects(client)
    except Exception as exc:  # any outage leaves the outbox for the next run
        get_run_logger().warning("Label Studio unavailable, reviews stay in the outbox: %s", exc)
        return DeliveryResult(error=str(exc))
    with open_session(rt.db_url) as s, s.begin():
        result = deliver_by_policy(s, client, projects, rt.policy, now)
        raise_alerts(s, held_alerts(result.held, now), LogSink(), now)
    return result
