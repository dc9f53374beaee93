"""Pull reviewer annotations back from Label Studio; first deliver any review work still waiting."""

from dataclasses import asdict
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.delivery import deliver_reviews
from flows.runtime import Runtime, runtime
from fraudloop.storage import open_session
from labeling.escalation import push_patches
from labeling.reconcile import SyncResult, sync_reviews


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 5, 15])
def reconcile(rt: Runtime, now: datetime) -> SyncResult:
    client = rt.labelstudio()
    projects = rt.projects(client)
    with open_session(rt.db_url) as s, s.begin():
        result = sync_reviews(s, client, projects, now, rt.policy)
    with open_session(rt.db_url) as s, s.begin():
        push_patches(s, client)  # returns and closures decided above reach Label Studio
    return result


@flow(name="sync-reviews")
def sync_flow(now: datetime | None = None) -> dict[str, Any]:
    """Outbox delivery (cases kept while Label Studio was down), then a full reconciliation pass."""
    rt = runtime()
    now = now or rt.clock()
    down = rt.labelstudio_down()
    if down is not None:  # one line, not three retries' tracebacks: nothing to do until it is up
        get_run_logger().error(down)
        return {"error": down, "delivered": 0}
    delivery = deliver_reviews(rt, now)
    return {
        **asdict(reconcile(rt, now)),
        "delivered": delivery.delivered,
        "outbox_error": delivery.error,
    }
