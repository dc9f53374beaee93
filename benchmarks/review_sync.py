"""Benchmark (not a test): review cases into Label Studio and their answers back
(`fraudloop bench review-sync`).

n cases go through the outbox (the policy's micro-batches, similar cases on), n answers are
posted, and three reconciliation passes are timed over every queue (`labeling.reconcile`): the
one that applies the n new answers (the tasks changed since each queue's watermark, Label
Studio's `updated_at` filter, then their export); the same pass again at once, inside the
watermark's safety overlap (`schedules.sync_overlap_seconds`), which reads the n again as
already seen; and an idle pass, nothing changed for longer than the overlap, which reads
nothing. The idle pass runs with the overlap at 0 rather than waiting it out: the same
requests, asking from a later `since`. Last, the latency from a reviewer's submit to the audit
event through fraudloop's webhook. Needs a running Label Studio; works in projects of its own
(`bench-…`, deleted afterwards) and a throwaway SQLite store.
"""

import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from fraudloop import decisions
from fraudloop.errors import FraudloopError
from fraudloop.policy import QUEUES, Policy, load_policy
from fraudloop.settings import PACKAGE_DIR, Settings
from fraudloop.storage import AuditEvent, ReviewTask, make_engine, migrate
from labeling import server
from labeling.client import LabelStudioClient, connect
from labeling.outbox import deliver_pending
from labeling.projects import delete_projects, ensure_projects
from labeling.reconcile import SyncResult, sync_reviews
from labeling.review.cases import review_cases
from labeling.reviewers import add_reviewer
from labeling.tasks import build_task
from labeling.webhook import ensure_webhooks
from pipeline.route import ModelInfo, build_decisions
from simulation.reviewers import ui_result

NOW = datetime(2026, 3, 1, 12, 0)
POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
# a pass once the last change is older than the overlap: it asks only from the watermark on
IDLE_POLICY = POLICY.model_copy(
    update={"schedules": POLICY.schedules.model_copy(update={"sync_overlap_seconds": 0})}
)
WEBHOOK_SECRET = "bench-webhook-secret-0123456789"  # the API refuses short secrets
AUDIT_WAIT_SECONDS = 10  # a webhook whose audit event has not appeared by then failed


def _decisions(url: str, n: int, prefix: str) -> None:
    tx = pd.DataFrame(
        {
            "transaction_id": [f"{prefix}-{i}" for i in range(n)],
            "tx_datetime": [NOW - timedelta(seconds=i) for i in range(n)],
            "customer_id": [f"c{i % 900}" for i in range(n)],
            "terminal_id": [f"t{i % 1700}" for i in range(n)],
            "amount": [10.0 + (i % 400) for i in range(n)],
        }
    )
    reasons = [{"feature": "amount", "value": 1.0, "contribution": 0.4, "text": "big amount"}] * 3
    scored = pd.DataFrame({"score": [0.8] * n, "confidence": [0.8] * n, "reasons": [reasons] * n})
    batch = build_decisions(tx, scored, POLICY, ModelInfo("m", "1"), NOW)
    with Session(make_engine(url)) as s, s.begin():
        decisions.save(s, batch)


def run(url: str, token: str, n: int, webhooks: int, micro_batch: int) -> dict[str, Any]:
    """Every figure of the benchmark, as one dict."""
    tag = uuid.uuid4().hex[:6]
    client = connect(url, token, timeout=600)
    out: dict[str, Any] = {"n": n, "micro_batch": micro_batch}
    with tempfile.TemporaryDirectory(prefix="fraudloop-bench-") as scratch:
        tmp = Path(scratch)
        store = f"sqlite:///{tmp / 'store.db'}"
        migrate(store)
        _register_token_user(client, store, url, token)
        try:
            out |= _deliver_and_sync(client, store, n, micro_batch, tag)
            if webhooks:
                out |= _webhook_latency(client, store, tmp, url, token, webhooks, tag)
        finally:
            delete_projects(client, f"bench-{tag}")
    return out


def _register_token_user(client: LabelStudioClient, store: str, url: str, token: str) -> None:
    """The token's user posts every answer: a reviewer, or fraudloop would count none of them."""
    with Session(make_engine(store)) as s, s.begin():
        me = server.check_token(url, token)
        add_reviewer(s, client, me, "reviewer", "unused: the user exists", "benchmark", NOW)


def _deliver_and_sync(
    client: LabelStudioClient, store: str, n: int, micro_batch: int, tag: str
) -> dict[str, Any]:
    """n cases through the outbox into the queues; n answers back, then the three passes."""
    out: dict[str, Any] = {}
    _decisions(store, n, f"bench{tag}")
    queues = ensure_projects(client, list(QUEUES), f"bench-{tag}")
    t0 = time.perf_counter()
    with Session(make_engine(store)) as s, s.begin():
        delivered = deliver_pending(
            s,
            client,
            queues,
            micro_batch,
            NOW,
            similar_k=5,
            similar_pool=5000,
            similar_weights=POLICY.escalation.similar_weights,
        ).delivered
    out["deliver_seconds"] = round(time.perf_counter() - t0, 1)
    out["delivered"] = delivered

    # the answers: a project holding the same cases, each with an annotation, imported after a
    # first pass over every queue has set its watermark (as a running loop's passes have)
    answers = ensure_projects(client, ["async_review"], f"bench-{tag}-answers")["async_review"]
    projects = {**queues, "answers": answers}
    _sync_pass(client, store, projects, POLICY)
    with Session(make_engine(store)) as s:
        cases = review_cases(s, list(s.scalars(select(ReviewTask))))
    tasks = [
        {**build_task(c), "annotations": [{"result": ui_result("reject", "reject")}]} for c in cases
    ]
    t0 = time.perf_counter()
    client.request("POST", f"/api/projects/{answers}/import", json=tasks)
    out["import_annotated_seconds"] = round(time.perf_counter() - t0, 1)
    out["tasks_in_queues"] = delivered + len(tasks)
    for name, policy in (("apply", POLICY), ("overlap_resync", POLICY), ("idle", IDLE_POLICY)):
        seconds, result = _sync_pass(client, store, projects, policy)
        out[f"{name}_seconds"] = round(seconds, 2)
        out[f"{name}_rows_read"] = result.total()  # answers read back, whatever became of them
        out[f"{name}_outcomes"] = {k: v for k, v in asdict(result).items() if v}
    return out


def _sync_pass(
    client: LabelStudioClient, store: str, projects: dict[str, int], policy: Policy
) -> tuple[float, SyncResult]:
    """One reconciliation pass over these projects, in one store transaction, timed."""
    t0 = time.perf_counter()
    with Session(make_engine(store)) as s, s.begin():
        result = sync_reviews(s, client, projects, NOW, policy)
    return time.perf_counter() - t0, result


def _webhook_latency(  # noqa: PLR0913 - the Label Studio, the store and the run's tag
    client: LabelStudioClient, store: str, tmp: Path, url: str, token: str, n: int, tag: str
) -> dict[str, Any]:
    """Submit -> audit event through fraudloop's API, polling the store every 5 ms."""
    out: dict[str, Any] = {}
    settings = Settings(
        home=tmp,
        db_url=store,
        labelstudio_url=url,
        labelstudio_token=token,
        webhook_secret=WEBHOOK_SECRET,
    )
    port = 18_500 + int(tag, 16) % 1000
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    hook = ensure_projects(client, ["sync_review"], f"bench-{tag}-hook")["sync_review"]
    ensure_webhooks(
        client, [hook], f"http://127.0.0.1:{port}/v1/webhooks/labelstudio", WEBHOOK_SECRET
    )
    _decisions(store, n, f"hook{tag}")
    with Session(make_engine(store)) as s, s.begin():
        deliver_pending(s, client, {"async_review": hook}, 1000, NOW)
    with Session(make_engine(store)) as s:
        hooked = list(
            s.execute(
                select(ReviewTask.transaction_id, ReviewTask.ls_task_id).where(
                    ReviewTask.ls_project_id == hook
                )
            )
        )
    latencies = []
    engine = make_engine(store)
    for tx_id, task_id in hooked:
        t0 = time.perf_counter()
        client.request(
            "POST",
            f"/api/tasks/{task_id}/annotations/",
            json={"result": ui_result("reject", "reject")},
        )
        while True:
            with Session(engine) as s:
                found = s.scalar(
                    select(AuditEvent.seq).where(
                        AuditEvent.transaction_id == tx_id, AuditEvent.event_type == "review"
                    )
                )
            if found is not None:
                break
            if time.perf_counter() - t0 > AUDIT_WAIT_SECONDS:
                raise FraudloopError(f"no audit event for {tx_id} after {AUDIT_WAIT_SECONDS} s")
            time.sleep(0.005)
        latencies.append(time.perf_counter() - t0)
    server.should_exit = True
    q = statistics.quantiles(latencies, n=20)
    out["webhook_n"] = len(latencies)
    out["webhook_p50_s"] = round(statistics.median(latencies), 3)
    out["webhook_p95_s"] = round(q[18], 3)
    out["webhook_max_s"] = round(max(latencies), 3)
    return out
