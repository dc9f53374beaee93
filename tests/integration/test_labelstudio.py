"""Label Studio end to end: projects, idempotent pushes, simulated reviews, incremental sync."""

import random
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from fraudloop.errors import FraudloopError
from fraudloop.redaction import redact
from labeling import server
from labeling.client import LabelStudioClient, connect
from labeling.label_config import ReviewOutcome
from labeling.projects import ensure_projects
from labeling.sync import fetch_annotations, parse_outcome
from labeling.tasks import find_tasks, push_tasks
from simulation.reviewers import open_tasks, review_pending

pytestmark = pytest.mark.integration

QUEUES = ["sync_review", "async_review"]
REPO = Path(__file__).resolve().parents[2]


def _case(i: int) -> dict:
    raw = {
        "transaction_id": f"tx-{i}",
        "tx_datetime": datetime(2018, 4, 1, 10, i % 60),
        "customer_id": f"cust-{i % 7}",
        "terminal_id": f"term-{i % 5}",
        "amount": 20.0 * (i + 1),
        "card_number": "4111111111111111",
        "email": "someone@example.com",
        "ip_address": "10.20.30.40",
    }
    return {
        "case_id": f"case-{i}",
        "transaction_id": raw["transaction_id"],
        "snapshot": redact(raw),
        "score": 0.72 + 0.01 * i,
        "recommendation": "reject",
        "reasons": ["amount is high", "new terminal", "night-time"],
        "model_version": "3",
        "sla_due_at": datetime(2026, 11, 26, 12, 0),
    }


@pytest.fixture(scope="module")
def client(labelstudio: tuple[str, str]) -> Iterator[LabelStudioClient]:
    url, token = labelstudio
    ls = connect(url, token)
    yield ls
    ls.close()


@pytest.fixture(scope="module")
def projects(client: LabelStudioClient) -> dict[str, int]:
    """Fresh projects per run, so a reused data dir starts from empty queues."""
    prefix = f"fraudloop-test-{uuid.uuid4().hex[:8]}"
    first = ensure_projects(client, QUEUES, title_prefix=prefix)
    assert ensure_projects(client, QUEUES, title_prefix=prefix) == first
    return first


def test_projects_are_idempotent_and_ordered_by_priority(
    client: LabelStudioClient, projects: dict[str, int]
) -> None:
    assert set(projects) == set(QUEUES) and len(set(projects.values())) == 2
    views = client.sdk.views.list(project=projects["sync_review"])
    assert [v.data["ordering"] for v in views] == [["-tasks:data.priority"]]


def test_push_review_and_sync(
    labelstudio: tuple[str, str], client: LabelStudioClient, projects: dict[str, int]
) -> None:
    me = server.check_token(*labelstudio)  # the API user the simulated reviewer acts as
    project = projects["async_review"]
    cases = [_case(i) for i in range(12)]
    first = push_tasks(client, project, cases[:8])
    again = push_tasks(client, project, cases)  # overlaps the first batch
    assert again.items() >= first.items() and len(again) == 12
    assert find_tasks(client, project, [c["case_id"] for c in cases]) == again
    queue = open_tasks(client, project, limit=20)
    assert len(queue) == 12  # no duplicates
    assert [t["data"]["case_id"] for t in queue] == [f"case-{i}" for i in reversed(range(12))]

    truth = {c["case_id"]: i % 2 == 0 for i, c in enumerate(cases)}
    assert (
        review_pending(client, project, truth, error_rate=0.0, rng=random.Random(7), limit=5) == 5
    )
    records = fetch_annotations(client, project, since=None)
    assert {r.case_id for r in records} == {f"case-{i}" for i in range(7, 12)}
    for record in records:
        outcome = parse_outcome(record, "reject")
        assert isinstance(outcome, ReviewOutcome)
        assert outcome.choice == ("reject" if truth[record.case_id] else "approve")
        assert (record.rationale is not None) == outcome.is_override
        assert record.reviewer == me
        assert record.ls_task_id == again[record.case_id]
        assert record.lead_time is not None and record.lead_time > 0

    watermark = max(r.updated_at for r in records)
    assert fetch_annotations(client, project, since=watermark) == []
    assert (
        review_pending(client, project, truth, error_rate=0.0, rng=random.Random(7), limit=3) == 3
    )
    newer = fetch_annotations(client, project, since=watermark)
    assert {r.case_id for r in newer} == {"case-4", "case-5", "case-6"}
    assert all(r.updated_at > watermark for r in newer)


def test_start_is_a_no_op_when_up_and_stop_is_idempotent(
    labelstudio: tuple[str, str], tmp_path: Path
) -> None:
    url, token = labelstudio
    host, port = url.removeprefix("http://").split(":")
    pid = server.start(
        venv=tmp_path / "no-venv-needed",
        data_dir=tmp_path,
        host=host,
        port=int(port),
        username="x",
        password="y",
        token=token,
    )
    assert pid is None  # already up, started from another data dir: left alone
    assert server.stop(tmp_path) is False
    assert server.stop(tmp_path) is False
    with pytest.raises(FraudloopError, match="rejects the API token"):
        server.check_token(url, "f" * 40)


def test_user_errors_name_the_problem(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = {"host": "127.0.0.1", "port": port, "username": "x", "password": "y", "token": "z"}
        with pytest.raises(FraudloopError, match="not installed"):
            server.start(venv=tmp_path / "missing", data_dir=tmp_path, **args)
        with pytest.raises(FraudloopError, match=f"port {port}"):
            server.start(venv=REPO / ".services/labelstudio-venv", data_dir=tmp_path, **args)
