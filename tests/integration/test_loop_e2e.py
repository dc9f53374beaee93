"""The whole loop for real: Label Studio server, MLflow registry, Prefect flow runs, SQLite store.

One small simulated world goes through train -> score -> review in Label Studio -> sync ->
chargebacks -> retrain -> monitor, exactly as `fraudloop demo` runs it.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sqlalchemy import func, select

from fraudloop import audit
from fraudloop.settings import PACKAGE_DIR, get_settings
from fraudloop.storage import AuditEvent, Decision, Label, Quarantine, ReviewTask, open_session

pytestmark = pytest.mark.integration

CONFIG: dict[str, Any] = {
    "customers": 500,
    "terminals": 1000,
    "history_days": 30,
    "live_days": 3,
    "batches_per_day": 2,
    "malformed_per_batch": 1,
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
    from simulation.demo import DemoConfig, demo_flow

    monkeypatch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("home")
    fraudloop_env(monkeypatch, home, *labelstudio, policy_file, "e2e-test")
    summary = demo_flow(DemoConfig(**CONFIG), fresh=True)
    yield summary
    monkeypatch.undo()
    get_settings.cache_clear()


def _db() -> str:
    return get_settings().database_url


def test_summary_counts_the_whole_loop(loop: dict[str, Any]) -> None:
    counts = loop["counts"]
    assert counts["transactions_scored"] > 1000
    assert counts["sent_to_review"] > 0
    assert counts["reviewed"] + counts["escalated"] == counts["sent_to_review"]
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


def test_reviews_went_through_label_studio(loop: dict[str, Any]) -> None:
    with open_session(_db()) as s:
        tasks = pd.read_sql(select(ReviewTask), s.connection())
        reviewers = set(s.scalars(select(Decision.reviewer).where(Decision.reviewer.is_not(None))))
    assert not tasks.empty
    assert tasks["ls_task_id"].notna().all()
    assert set(tasks["status"]) == {"reviewed"}
    # the Label Studio users who annotated: the fixture's user, and the demo's second reviewer
    # for the sign-offs of high-impact cases
    assert reviewers <= {"reviewer@fraudloop.test", "second-reviewer@fraudloop.local"}
    assert "reviewer@fraudloop.test" in reviewers


def test_reviewed_labels_feed_the_next_model(loop: dict[str, Any]) -> None:
    first, retrained = loop["trained"]
    assert retrained["version"] > first["version"]
    with open_session(_db()) as s:
        review_labels = set(s.scalars(select(Label.transaction_id).where(Label.source == "review")))
        rejected = s.scalar(select(func.count()).select_from(Quarantine))
    used = review_labels.intersection(retrained["training_ids"])
    assert retrained["reviewed_labels_in_training"] == len(used) > 0
    assert first["reviewed_labels_in_training"] == 0
    assert rejected > 0


def test_promotion_is_audited(loop: dict[str, Any]) -> None:
    with open_session(_db()) as s:
        kinds = list(
            s.scalars(select(AuditEvent.event_type).where(AuditEvent.event_type.like("promotion%")))
        )
    assert kinds[0] == "promotion"  # the first model has no champion to beat
    assert len(kinds) == 2
