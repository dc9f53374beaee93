"""Label Studio down during scoring: decisions are stored, review work waits and is delivered later."""

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from fraudloop.settings import PACKAGE_DIR, get_settings
from fraudloop.storage import Decision, ReviewTask, open_session
from labeling.client import connect
from labeling.projects import delete_projects
from simulation.world import SimulationConfig, simulate, write_world

pytestmark = pytest.mark.integration

DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_review_tasks_survive_a_label_studio_outage(
    labelstudio: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fraudloop_env: Callable[..., None],
) -> None:
    from flows.score import score_flow
    from flows.sync import sync_flow
    from flows.train import train_flow

    url, token = labelstudio
    delete_projects(connect(url, token), "outbox-test")  # a reused server may hold an earlier run's
    policy = yaml.safe_load((PACKAGE_DIR / "policy.yaml").read_text())
    policy["fraud"].update(review_from=0.2, low_confidence_below=0.5)  # plenty of review work
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    cfg = SimulationConfig(n_customers=400, n_terminals=800, days=32)
    world = write_world(simulate(cfg), tmp_path, delay_days=7)
    live = cfg.start + timedelta(days=30)

    monkeypatch.setenv("FRAUDLOOP_SCORE_CHUNK_ROWS", "300")  # the day's ~800 in 3 chunks
    fraudloop_env(monkeypatch, tmp_path / "home", DEAD_URL, token, policy_path, "outbox-test")
    train_flow(world.transactions, world.chargebacks, live)
    scored = score_flow(world.transactions, live, live + timedelta(days=1))
    assert scored["outbox_error"] and scored["delivered"] == 0
    db = get_settings().database_url
    with open_session(db) as s:
        decided = s.scalar(select(func.count()).select_from(Decision))
        waiting = s.scalar(
            select(func.count()).select_from(ReviewTask).where(ReviewTask.status == "pending")
        )
    assert decided == scored["scored"] > 0
    assert waiting > 0

    fraudloop_env(monkeypatch, tmp_path / "home", url, token, policy_path, "outbox-test")
    synced = sync_flow(live + timedelta(days=1))
    assert synced["delivered"] == waiting
    assert synced["outbox_error"] is None
    with open_session(db) as s:
        statuses = dict(
            s.execute(select(ReviewTask.status, func.count()).group_by(ReviewTask.status)).all()
        )
        ls_ids = s.scalars(select(ReviewTask.ls_task_id)).all()
    assert statuses == {"delivered": waiting}
    assert len(set(ls_ids)) == waiting and None not in ls_ids
    again = sync_flow(live + timedelta(days=1))  # nothing is delivered twice
    assert again["delivered"] == 0
