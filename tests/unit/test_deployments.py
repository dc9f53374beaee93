"""Every scheduled flow has a deployment with the schedule the policy file gives it."""

from pathlib import Path

import pytest

from flows.deployments import deployments, full_name
from fraudloop.errors import FraudloopError
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
MINE = {
    "score-intake",
    "sync-reviews",
    "sla-sweep",
    "chargeback-intake",
    "drift-check",
    "retrain",
    "qa-report",
}


def test_schedules_come_from_the_policy() -> None:
    found = {d.name: d for d in deployments(POLICY)}
    assert MINE <= set(found)  # other flows add theirs (alerts, checkpoints)
    assert "chargeback-feed" not in found  # the simulator's feed only when asked for
    schedule = {name: d.schedules[0].schedule for name, d in found.items()}
    s = POLICY.schedules
    assert schedule["score-intake"].interval.total_seconds() == s.score_intake_seconds
    assert schedule["sync-reviews"].interval.total_seconds() == s.sync_minutes * 60
    assert schedule["sla-sweep"].interval.total_seconds() == s.sla_sweep_minutes * 60
    assert schedule["chargeback-intake"].cron == s.chargebacks_cron
    assert schedule["drift-check"].cron == s.drift_cron
    assert schedule["retrain"].cron == s.retrain_cron
    assert schedule["qa-report"].cron == s.report_cron


def test_each_deployment_runs_one_at_a_time() -> None:
    for d in deployments(POLICY):
        if d.name in MINE:
            assert d.concurrency_limit == 1, d.name


def test_the_simulated_feed_is_a_deployment_when_given(tmp_path: Path) -> None:
    found = {d.name: d for d in deployments(POLICY, tmp_path / "chargebacks.parquet")}
    assert found["chargeback-feed"].parameters["feed_path"].endswith("chargebacks.parquet")


def test_deployments_are_named_as_prefect_names_them() -> None:
    made = deployments(POLICY)
    assert full_name("drift-check", made) == "monitor/drift-check"
    assert full_name("score-intake/score-intake", made) == "score-intake/score-intake"
    with pytest.raises(FraudloopError, match="score-intake"):
        full_name("nightly", made)
