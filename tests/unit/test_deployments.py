"""Every scheduled flow has a deployment with the schedule the policy file gives it."""

from pathlib import Path

from flows.deployments import deployments
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR


def test_schedules_come_from_the_policy(tmp_path: Path) -> None:
    policy = load_policy(PACKAGE_DIR / "policy.yaml")
    found = {d.name: d for d in deployments(policy, tmp_path / "chargebacks.parquet")}
    assert set(found) == {"sync-reviews", "sla-sweep", "chargebacks", "retrain", "qa-report"}
    crons = {name: d.schedules[0].schedule for name, d in found.items()}
    assert crons["qa-report"].cron == policy.schedules.report_cron
    assert crons["retrain"].cron == policy.schedules.retrain_cron
    assert crons["sync-reviews"].interval.total_seconds() == policy.schedules.sync_minutes * 60
    assert crons["sla-sweep"].interval.total_seconds() == policy.schedules.sla_sweep_minutes * 60
    assert found["chargebacks"].parameters["feed_path"].endswith("chargebacks.parquet")
