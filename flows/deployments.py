"""The scheduled side of the loop as Prefect deployments, served from one process.

`fraudloop deploy` runs them (`prefect server start` + workers for more than one machine).
Cron strings and intervals live in the policy file's `schedules` section.
"""

from datetime import timedelta
from pathlib import Path

from prefect.deployments.runner import RunnerDeployment

from flows.chargebacks import chargeback_flow
from flows.monitor import monitor_flow
from flows.retrain import retrain_flow
from flows.sla_sweep import sla_sweep_flow
from flows.sync import sync_flow
from fraudloop.policy import Policy


def deployments(policy: Policy, chargeback_feed: Path) -> list[RunnerDeployment]:
    """Label sync, SLA sweep, chargeback intake, retraining and the QA report, each on its schedule."""
    s = policy.schedules
    made = [
        sync_flow.to_deployment(name="sync-reviews", interval=timedelta(minutes=s.sync_minutes)),
        sla_sweep_flow.to_deployment(
            name="sla-sweep", interval=timedelta(minutes=s.sla_sweep_minutes)
        ),
        chargeback_flow.to_deployment(
            name="chargebacks",
            cron=s.chargebacks_cron,
            parameters={"feed_path": str(chargeback_feed)},
        ),
        retrain_flow.to_deployment(name="retrain", cron=s.retrain_cron),
        monitor_flow.to_deployment(name="qa-report", cron=s.report_cron),
    ]
    return [d for d in made if isinstance(d, RunnerDeployment)]  # sync calls: never coroutines
