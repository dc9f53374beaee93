"""The whole loop for real: Label Studio server, MLflow registry, a Prefect server with the
deployments served, SQLite store.

One small simulated world goes through train -> landing files -> score-intake -> review in
Label Studio -> sync-reviews -> chargeback files -> chargeback-intake -> retrain -> qa-report,
exactly as `fraudloop demo` runs it: every step after the first model a triggered run of a
deployment, which the Prefect server must hold as completed.
"""

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sqlalchemy import func, select
from waiting import free_port

from flows import server
from fraudloop import audit
from fraudloop.settings import PACKAGE_DIR, get_settings
from fraudloop.storage import (
    AuditEvent,
    ChargebackRow,
    Decision,
    IntakeFile,
    Label,
    Quarantine,
    ReviewTask,
    open_session,
)

pytestmark = pytest.mark.integration

CONFIG: dict[str, Any] = {
    "customers": 500,
    "terminals": 1000,
    "history_days": 30,
    "live_days": 2,
    "batches_per_day": 2,
    "malformed_per_batch": 1,
}
BATCHES = CONFIG["live_days"] * CONFIG["batches_per_day"]
# the deployment runs the demo triggers: a score and a sync per batch, chargebacks each night,
# two syncs draining the last sign-offs, one retrain and one QA report
RUNS = {
    "score-intake": BATCHES,
    "sync-reviews": BATCHES + 2,
    "chargeback-intake": CONFIG["live_days"],
    "retrain": 1,
    "qa-report": 1,
}


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged policy with a one-day holdout, so the short run trains on reviewed days."""
    policy = yaml.safe_load((PACKAGE_DIR / "policy.yaml").read_text())
    policy["learning"]["holdout_days"] = 1
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


@pytest.fixture(scope="module")
def loop(
    labelstudio: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    policy_file: Path,
    fraudloop_env: Callable[..., None],
) -> Iterator[dict[str, Any]]:
    """`fraudloop demo`'s run, its Prefect server and runner on a free port, stopped after."""
    from simulation.demo import DemoConfig, run_demo

    monkeypatch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("home")
    fraudloop_env(monkeypatch, home, *labelstudio, policy_file, "e2e-test")
    monkeypatch.setenv("FRAUDLOOP_PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    get_settings.cache_clear()
    settings = get_settings()
    try:
        yield run_demo(DemoConfig(**CONFIG), fresh=True)
    finally:
        stopped = server.stop(settings)
        monkeypatch.undo()
        get_settings.cache_clear()
    assert stopped == {"deployments": True, "api": False, "prefect-server": True}


def _runs(deployment: str) -> list[Any]:
    """Every flow run the Prefect server holds of this deployment, oldest first."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with server.client(get_settings().prefect_api_url) as c:
        return list(
            c.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                sort=FlowRunSort.START_TIME_ASC,
            )
        )


def _db() -> str:
    return get_settings().database_url


def test_summary_counts_the_whole_loop(loop: dict[str, Any]) -> None:
    counts = loop["counts"]
    assert counts["transactions_scored"] > 1000
    assert counts["sent_to_review"] > 0
    # an escalation is an event on the way to a decision: it is counted, never a final state
    assert counts["reviewed"] + counts["awaiting_review"] == counts["sent_to_review"]
    assert counts["awaiting_review"] == 0
    assert (
        counts["auto_allowed"] + counts["auto_blocked"] + counts["sent_to_review"]
        == counts["transactions_scored"]
    )
    assert (
        counts["quarantined"]
        == CONFIG["live_days"] * CONFIG["batches_per_day"] * CONFIG["malformed_per_batch"]
    )
    assert Path(loop["where"]["QA report"]).is_file()
    assert Path(loop["where"]["Drift report"]).is_file()


def test_every_transaction_has_one_final_decision_and_audit_events(loop: dict[str, Any]) -> None:
    with open_session(_db()) as s:
        decisions = pd.read_sql(select(Decision), s.connection())
        events = audit.trail(s)
    assert decisions["transaction_id"].is_unique
    assert decisions["final_decision"].notna().all()
    first = events[events["event_type"].isin(["decision", "routed_to_review"])]
    assert first["transaction_id"].value_counts().max() == 1
    assert set(first["transaction_id"]) == set(decisions["transaction_id"])
    reviewed = decisions[decisions["route"].isin(["sync_review", "async_review"])]
    review_events = events[events["event_type"] == "review"]
    assert set(review_events["transaction_id"]) == set(reviewed["transaction_id"])
    by_tx = review_events.set_index("transaction_id")
    for row in reviewed.itertuples():
        event = by_tx.loc[row.transaction_id]
        assert event["actor"] == row.reviewer
        assert event["decision"] == row.final_decision
        assert event["sla_metadata"]["expected_minutes"] > 0
    assert (
        decisions.loc[decisions["route"] == "auto_allow", "final_decision"].eq("auto_approve").all()
    )
    assert loop["counts"]["escalated"] == (events["event_type"] == "escalated").sum()


def test_reviews_went_through_label_studio(loop: dict[str, Any]) -> None:
    with open_session(_db()) as s:
        tasks = pd.read_sql(select(ReviewTask), s.connection())
        reviewers = set(s.scalars(select(Decision.reviewer).where(Decision.reviewer.is_not(None))))
    assert not tasks.empty
    assert tasks["ls_task_id"].notna().all()
    # a case ends reviewed, or escalated (a sign-off disagreement, a breached SLA), and then
    # the case it was escalated to is there
    assert set(tasks["status"]) <= {"reviewed", "escalated"}
    escalated = tasks[tasks["status"] == "escalated"]
    assert set(escalated["case_id"]) <= set(tasks["parent_case_id"].dropna())
    assert set(tasks.loc[tasks["status"] == "reviewed", "transaction_id"]) == set(
        tasks["transaction_id"]
    )
    # the Label Studio users who annotated: the fixture's user, and the demo's second reviewer
    # for the sign-offs of high-impact cases
    assert reviewers <= {"reviewer@fraudloop.test", "second-reviewer@fraudloop.local"}
    assert "reviewer@fraudloop.test" in reviewers


def test_reviewed_labels_feed_the_next_model(loop: dict[str, Any]) -> None:
    first, retrained = loop["trained"]
    assert retrained["version"] > first["version"]
    with open_session(_db()) as s:
        review_labels = s.scalar(select(func.count()).where(Label.source == "review"))
        rejected = s.scalar(select(func.count()).select_from(Quarantine))
    # the registry's lineage of each version: how many training rows had a reviewer's label
    # (a source no label came from yet is left out)
    assert 0 < retrained["label_counts"].get("review", 0) <= review_labels, loop["trained"]
    assert retrained["reviewed_labels_in_training"] > 0
    assert first["label_counts"].get("review", 0) == first["reviewed_labels_in_training"] == 0
    assert rejected > 0


def test_each_step_was_a_completed_run_of_its_deployment(loop: dict[str, Any]) -> None:
    live_start = datetime(2018, 4, 1) + timedelta(days=CONFIG["history_days"])
    step = timedelta(days=1) / CONFIG["batches_per_day"]
    for deployment, expected in RUNS.items():
        runs = _runs(deployment)
        assert len(runs) == expected, deployment
        assert {r.state.type.value for r in runs} == {"COMPLETED"}, deployment
        assert not any(r.auto_scheduled for r in runs), f"{deployment}: schedules not paused"
    scored_at = [datetime.fromisoformat(r.parameters["now"]) for r in _runs("score-intake")]
    assert scored_at == [live_start + (i + 1) * step for i in range(BATCHES)]
    assert [r.parameters["as_of"] for r in _runs("retrain")] == [
        (live_start + timedelta(days=CONFIG["live_days"])).isoformat()
    ]
    assert "Prefect UI" in loop["where"]


def test_the_store_holds_what_the_landing_files_brought(loop: dict[str, Any]) -> None:
    with open_session(_db()) as s:
        files = pd.read_sql(select(IntakeFile), s.connection())
        decided = s.scalar(select(func.count()).select_from(Decision))
        chargebacks = s.scalar(select(func.count()).select_from(ChargebackRow))
        charged = s.scalar(
            select(func.count()).where(
                Label.source == "chargeback", Label.actor == "chargeback-intake"
            )
        )
        paid = set(
            s.scalars(
                select(Decision.final_decision).where(
                    Decision.transaction_id.in_(select(ChargebackRow.transaction_id))
                )
            )
        )
    transactions = files[files["kind"] == "transactions"]
    assert len(transactions) == BATCHES
    assert set(transactions["status"]) == {"done"}
    malformed = BATCHES * CONFIG["malformed_per_batch"]
    assert (
        decided == loop["counts"]["transactions_scored"] == transactions["rows"].sum() - malformed
    )
    nightly = files[files["kind"] == "chargebacks"]
    assert len(nightly) == CONFIG["live_days"]
    assert set(nightly["status"]) == {"done"}
    assert chargebacks == charged == nightly["rows"].sum() > 0
    assert paid <= {"auto_approve", "human_approve"}  # a dispute is of a payment that went through


def test_promotion_is_audited(loop: dict[str, Any]) -> None:
    with open_session(_db()) as s:
        kinds = list(
            s.scalars(select(AuditEvent.event_type).where(AuditEvent.event_type.like("promotion%")))
        )
    assert kinds[0] == "promotion"  # the first model has no champion to beat
    assert len(kinds) == 2
