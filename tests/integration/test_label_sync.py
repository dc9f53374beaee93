"""The incremental label sync against a real Label Studio: after the first pass, a sync reads
only the tasks changed since its watermark (counted on the wire), a sync when nothing changed
reads no task at all, and nothing is missed: new answers, an edited one, and a change stamped
before the watermark but inside the safety overlap."""

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop import audit, decisions
from fraudloop.policy import QUEUES, Policy, load_policy
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import ReviewTask, SyncWatermark, make_engine, migrate
from labeling import server
from labeling.client import LabelStudioClient, connect
from labeling.outbox import deliver_pending
from labeling.projects import ensure_projects
from labeling.reconcile import SyncResult, sync_reviews, watermark_source
from labeling.reviewers import add_reviewer
from pipeline.route import ModelInfo, build_decisions
from simulation.reviewers import ui_result

pytestmark = pytest.mark.integration
POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
NOW = datetime(2026, 3, 1, 12, 0)
N = 30


def _no_overlap(policy: Policy) -> Policy:
    schedules = policy.schedules.model_copy(update={"sync_overlap_seconds": 0})
    return policy.model_copy(update={"schedules": schedules})


class Wire:
    """Every request the client sends, as (method, path, query)."""

    def __init__(self, client: LabelStudioClient) -> None:
        self.seen: list[tuple[str, str, dict[str, list[str]]]] = []
        client.http.event_hooks["request"].append(self._record)

    def _record(self, request: httpx.Request) -> None:
        query = parse_qs(request.url.query.decode())
        self.seen.append((request.method, request.url.path, query))

    def clear(self) -> None:
        self.seen.clear()

    def exported_ids(self) -> list[int]:
        return [int(i) for _, path, q in self.seen if path.endswith("/export") for i in q["ids[]"]]

    def full_exports(self) -> int:
        return sum(path.endswith("/export") and "ids[]" not in q for _, path, q in self.seen)

    def filters(self) -> list[dict]:
        return [
            item
            for _, path, q in self.seen
            if path == "/api/tasks" and "query" in q
            for item in json.loads(q["query"][0])["filters"]["items"]
        ]


@pytest.fixture
def world(labelstudio: tuple[str, str], tmp_path: Path) -> Iterator[tuple]:
    """N review cases delivered to fresh queues; the token's user is a registered senior."""
    client = connect(*labelstudio)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    records = [
        {
            "transaction_id": f"tx-{i}",
            "tx_datetime": NOW - timedelta(minutes=i),
            "customer_id": f"c{i % 4}",
            "terminal_id": f"t{i % 3}",
            "amount": 20.0 + i,  # below the high-impact limit: one answer decides
        }
        for i in range(N)
    ]
    frame, rejected = validate_batch(records)
    assert not rejected
    reasons = [{"feature": "amount", "value": 1.0, "contribution": 0.5, "text": "big amount"}] * 3
    scored = pd.DataFrame({"score": [0.8] * N, "confidence": [0.8] * N, "reasons": [reasons] * N})
    batch = build_decisions(frame, scored, POLICY, ModelInfo("m", "5"), NOW)
    queues = ensure_projects(client, list(QUEUES), f"sync-{uuid.uuid4().hex[:8]}")
    with Session(make_engine(url)) as s, s.begin():
        decisions.save(s, batch)
        me = server.check_token(*labelstudio)
        add_reviewer(s, client, me, "senior", "unused: the user exists", "admin", NOW)
    with Session(make_engine(url)) as s, s.begin():
        assert deliver_pending(s, client, queues, 50, NOW).delivered == N
    with Session(make_engine(url)) as s:
        tasks = dict(
            s.execute(
                select(ReviewTask.case_id, ReviewTask.ls_task_id).order_by(ReviewTask.case_id)
            )
            .tuples()
            .all()
        )
    yield client, url, queues, list(tasks.values())
    client.close()


def _answer(client: LabelStudioClient, task_id: int) -> int:
    result = ui_result("reject", "reject")  # agrees with the model: no rationale needed
    return int(
        client.request(
            "POST", f"/api/tasks/{task_id}/annotations/", json={"result": result}
        ).json()["id"]
    )


def _sync(
    url: str, client: LabelStudioClient, queues: dict[str, int], policy: Policy
) -> SyncResult:
    with Session(make_engine(url)) as s, s.begin():
        return sync_reviews(s, client, queues, NOW + timedelta(minutes=10), policy)


def test_sync_reads_only_what_changed_since_its_watermark(world: tuple) -> None:
    client, url, queues, tasks = world
    policy = _no_overlap(POLICY)
    wire = Wire(client)
    for task_id in tasks[:10]:
        _answer(client, task_id)

    first = _sync(url, client, queues, policy)
    assert first.applied == 10
    assert wire.full_exports() == len(queues)  # no watermark yet: every queue read in full
    with Session(make_engine(url)) as s:
        marks = {m.source: m.updated_at for m in s.scalars(select(SyncWatermark))}
    assert set(marks) <= {watermark_source(client.url, p) for p in queues.values()} and marks

    wire.clear()
    idle = _sync(url, client, queues, policy)
    assert idle.total() == 0
    assert wire.exported_ids() == [] and wire.full_exports() == 0  # not one task read
    changed = [f for f in wire.filters() if f["filter"] == "filter:tasks:updated_at"]
    assert {f["operator"] for f in changed} == {"greater"}
    assert all(f["value"].endswith("Z") for f in changed)
    assert len([m for m, path, _ in wire.seen if path == "/api/tasks"]) == len(queues)

    # three new answers and one answer edited after the watermark: read, and only they
    edited = client.request("GET", f"/api/tasks/{tasks[0]}").json()["annotations"][0]["id"]
    client.request(
        "PATCH", f"/api/annotations/{edited}/", json={"result": ui_result("reject", "reject")}
    )
    for task_id in tasks[10:13]:
        _answer(client, task_id)
    wire.clear()
    later = _sync(url, client, queues, policy)
    assert sorted(wire.exported_ids()) == sorted([tasks[0], *tasks[10:13]])
    assert later.applied == 3
    assert later.already_seen == 1  # the edit of the answer that closed its case: read, kept once
    with Session(make_engine(url)) as s:
        reviews = audit.trail(s)
    assert (reviews["event_type"] == "review").sum() == 13  # every answer once, none twice


def test_the_overlap_catches_a_change_stamped_before_the_watermark(world: tuple) -> None:
    """A change saved while the last pass read, stamped a little before the newest change that
    pass saw: without the overlap it would fall behind the watermark for ever."""
    client, url, queues, tasks = world
    _answer(client, tasks[0])
    assert _sync(url, client, queues, POLICY).applied == 1
    _answer(client, tasks[1])  # stamped now ...
    ahead = timedelta(seconds=POLICY.schedules.sync_overlap_seconds / 2)
    with Session(make_engine(url)) as s, s.begin():
        for mark in s.scalars(select(SyncWatermark)):
            mark.updated_at += ahead  # ... and the last pass saw a change stamped later
    caught = _sync(url, client, queues, POLICY)
    assert caught.applied == 1 and caught.already_seen == 1  # the overlap re-reads, applies once
    assert _sync(url, client, queues, _no_overlap(POLICY)).total() == 0
