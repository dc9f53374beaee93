"""Every scheduled flow as a Prefect deployment, served from one process (`fraudloop deploy`,
which `fraudloop up` starts detached against its Prefect server: `flows.server`).

Cron strings and intervals live in the policy file's `schedules` section. A deployment runs one
flow run at a time: a run still going when the next is due makes that one stand down
(cancelled), so two intake runs never read the same folder at once.
"""

from datetime import timedelta
from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment

from flows.alerts import alerts_flow
from flows.audit_sample import audit_sample_flow
from flows.chargebacks import chargeback_flow
from flows.checkpoint import checkpoint_flow
from flows.intake import chargeback_intake_flow, score_intake_flow
from flows.model_qa import model_qa_flow
from flows.monitor import monitor_flow
from flows.retrain import retrain_flow
from flows.sla_sweep import sla_sweep_flow
from flows.sync import sync_flow
from fraudloop.errors import FraudloopError
from fraudloop.policy import Policy

ONE_AT_A_TIME = ConcurrencyLimitConfig(
    limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
)


def deployments(
    policy: Policy, chargeback_feed: Path | None = None, paused: bool = False
) -> list[RunnerDeployment]:
    """Scoring from the intake, label sync, SLA sweep, chargeback intake, the daily drift check,
    nightly retraining, the weekly post-verify audit sample, the weekly QA report and the monthly
    model QA, each on its schedule; with `chargeback_feed` also the label-event feed
    `fraudloop simulate` writes. `paused`
    registers them paused: the server's scheduler never sees them active, so no run is
    scheduled at all (pausing after registering races the scheduler, which may insert an
    hour of runs from what it read just before)."""
    s = policy.schedules
    once = ONE_AT_A_TIME
    made = [
        score_intake_flow.to_deployment(
            name="score-intake",
            interval=timedelta(seconds=s.score_intake_seconds),
            concurrency_limit=once,
        ),
        sync_flow.to_deployment(
            name="sync-reviews", interval=timedelta(minutes=s.sync_minutes), concurrency_limit=once
        ),
        sla_sweep_flow.to_deployment(
            name="sla-sweep",
            interval=timedelta(minutes=s.sla_sweep_minutes),
            concurrency_limit=once,
        ),
        chargeback_intake_flow.to_deployment(
            name="chargeback-intake", cron=s.chargebacks_cron, concurrency_limit=once
        ),
        monitor_flow.to_deployment(
            name="drift-check",
            cron=s.drift_cron,
            parameters={"report": False},  # the QA report is weekly: `qa-report`
            concurrency_limit=once,
        ),
        retrain_flow.to_deployment(name="retrain", cron=s.retrain_cron, concurrency_limit=once),
        audit_sample_flow.to_deployment(
            name="audit-sample", cron=s.audit_sample_cron, concurrency_limit=once
        ),
        monitor_flow.to_deployment(name="qa-report", cron=s.report_cron, concurrency_limit=once),
        model_qa_flow.to_deployment(
            name="monthly-model-qa", cron=s.model_qa_cron, concurrency_limit=once
        ),
        alerts_flow.to_deployment(
            name="evaluate-alerts",
            interval=timedelta(minutes=s.alerts_minutes),
            concurrency_limit=once,
        ),
        checkpoint_flow.to_deployment(
            name="audit-checkpoint", cron=s.checkpoint_cron, concurrency_limit=once
        ),
    ]
    if chargeback_feed is not None:
        made.append(
            chargeback_flow.to_deployment(
                name="chargeback-feed",
                cron=s.chargebacks_cron,
                parameters={"feed_path": str(chargeback_feed)},
                concurrency_limit=once,
            )
        )
    served = [d for d in made if isinstance(d, RunnerDeployment)]  # sync calls: never coroutines
    for d in served:
        d.paused = paused
    return served


def full_name(name: str, made: list[RunnerDeployment]) -> str:
    """`flow/deployment`, as Prefect names a deployment, from the deployment's own name."""
    for d in made:
        if name in (d.name, f"{d.flow_name}/{d.name}"):
            return f"{d.flow_name}/{d.name}"
    known = ", ".join(d.name for d in made)
    raise FraudloopError(f"no deployment named {name!r}; the deployments are: {known}")
