"""SLA sweep: overdue Tier 1 cases to Tier 2, Tier 3 paged, priorities aged, Label Studio told."""

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime, runtime
from fraudloop.alerts import AlertSink, WebhookSink
from fraudloop.storage import open_session
from labeling.escalation import PatchResult, push_patches
from labeling.outbox import DeliveryResult, deliver_by_policy
from labeling.review.paging import page_sink, send_pages
from labeling.review.sla import SweepResult, sweep


@task(cache_policy=NO_CACHE)
def escalate_overdue(rt: Runtime, now: datetime) -> SweepResult:
    with open_session(rt.db_url) as s, s.begin():
        return sweep(s, rt.policy, now)


@task(cache_policy=NO_CACHE)
def page_tier3(rt: Runtime, result: SweepResult, sink: AlertSink, now: datetime) -> int:
    with open_session(rt.db_url) as s, s.begin():
        return send_pages(s, result.pages, sink, now)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 15])
def mirror(rt: Runtime, now: datetime) -> tuple[DeliveryResult, PatchResult]:
    """New Tier 2 / sign-off cases into their projects; closed and re-ranked tasks updated."""
    try:
        client = rt.labelstudio()
        projects = rt.projects(client)
    except Exception as exc:  # any outage: the store holds everything for the next sweep
        get_run_logger().warning("Label Studio unavailable, changes wait in the store: %s", exc)
        return DeliveryResult(error=str(exc)), PatchResult(error=str(exc))
    with open_session(rt.db_url) as s, s.begin():
        delivered = deliver_by_policy(s, client, projects, rt.policy, now)
    with open_session(rt.db_url) as s, s.begin():
        return delivered, push_patches(s, client)


@flow(name="sla-sweep")
def sla_sweep_flow(now: datetime | None = None, page_url: str | None = None) -> dict[str, Any]:
    """Run every few minutes; `page_url` posts Tier 3 pages to a paging webhook (else the log)."""
    rt = runtime()
    now = now or rt.clock()
    result = escalate_overdue(rt, now)
    paged = page_tier3(rt, result, WebhookSink(page_url) if page_url else page_sink(rt.policy), now)
    delivered, patched = mirror(rt, now)
    return {
        "escalated": len(result.escalated),
        "reprioritized": result.reprioritized,
        "paged": paged,
        "delivered": delivered.delivered,
        "patched": patched.patched,
        "labelstudio_error": delivered.error or patched.error,
    }
