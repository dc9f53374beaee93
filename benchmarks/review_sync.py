"""Benchmark (not a test): 10,000 review tasks into Label Studio and 10,000 answers back, and the
latency from a reviewer's submit to the audit event through the webhook.

    uv run python -m benchmarks.review_sync --url http://127.0.0.1:8089 --token <40 hex>

Needs a running Label Studio (`fraudloop up`); creates its own projects (prefix `bench-…`) and a
throwaway SQLite store. Prints one JSON line of figures.
"""

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from fraudloop import decisions
from fraudloop.policy import QUEUES, load_policy
from fraudloop.settings import PACKAGE_DIR, Settings
from fraudloop.storage import AuditEvent, ReviewTask, make_engine, migrate
from labeling import server
from labeling.client import LabelStudioClient, connect
from labeling.outbox import deliver_pending
from labeling.projects import ensure_projects
from labeling.reconcile import sync_reviews
from labeling.review.cases import review_cases
from labeling.reviewers import add_reviewer
from labeling.tasks import build_task
from labeling.webhook import ensure_webhooks
from pipeline.route import ModelInfo, build_decisions
from simulation.reviewers import ui_result

NOW = datetime(2026, 3, 1, 12, 0)
POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8089")
    parser.add_argument("--token", required=True)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--webhooks", type=int, default=200)
    parser.add_argument(
        "--micro-batch", type=int, default=POLICY.review.micro_batch, help="tasks per import"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fraudloop-bench-"))
    store = f"sqlite:///{tmp / 'store.db'}"
    migrate(store)
    client = connect(args.url, args.token, timeout=600)
    _register_token_user(client, store, args.url, args.token)
    tag = uuid.uuid4().hex[:6]
    out: dict[str, Any] = {"n": args.n, "machine": f"{platform.node()} {platform.machine()}"}

    out["micro_batch"] = args.micro_batch
    out |= _deliver_and_sync(client, store, args.n, args.micro_batch, tag)
    out |= _webhook_latency(client, store, tmp, args, tag)
    print(json.dumps(out))


def _register_token_user(client: LabelStudioClient, store: str, url: str, token: str) -> None:
    """The token's user posts every answer: a reviewer, or fraudloop would count none of them."""
    with Session(make_engine(store)) as s, s.begin():
        me = server.check_token(url, token)
        add_reviewer(s, client, me, "reviewer", "unused: the user exists", "benchmark", NOW)


def _deliver_and_sync(
    client: LabelStudioClient, store: str, n: int, micro_batch: int, tag: str
) -> dict[str, Any]:
    """n cases through the outbox (policy micro-batches, similar cases on); n answers back."""
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

    # the answers: a project holding the same cases, each with an annotation
    answers = ensure_projects(client, ["async_review"], f"bench-{tag}-answers")["async_review"]
    with Session(make_engine(store)) as s:
        cases = review_cases(s, list(s.scalars(select(ReviewTask))))
    tasks = [
        {**build_task(c), "annotations": [{"result": ui_result("reject", "reject")}]} for c in cases
    ]
    t0 = time.perf_counter()
    client.request("POST", f"/api/projects/{answers}/import", json=tasks)
    out["import_annotated_seconds"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    with Session(make_engine(store)) as s, s.begin():
        first = sync_reviews(s, client, {"async_review": answers}, NOW, POLICY)
    out["sync_seconds"] = round(time.perf_counter() - t0, 1)
    out["sync_applied"] = first.applied
    t0 = time.perf_counter()
    with Session(make_engine(store)) as s, s.begin():
        again = sync_reviews(s, client, {"async_review": answers}, NOW, POLICY)
    out["resync_seconds"] = round(time.perf_counter() - t0, 1)
    out["resync_already_seen"] = again.already_seen

    return out


def _webhook_latency(
    client: LabelStudioClient, store: str, tmp: Path, args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    """Submit -> audit event through fraudloop's API, polling the store every 5 ms."""
    out: dict[str, Any] = {}
    settings = Settings(
        home=tmp,
        db_url=store,
        labelstudio_url=args.url,
        labelstudio_token=args.token,
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
    _decisions(store, args.webhooks, f"hook{tag}")
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
                raise SystemExit(f"no audit event for {tx_id} after {AUDIT_WAIT_SECONDS} s")
            time.sleep(0.005)
        latencies.append(time.perf_counter() - t0)
    server.should_exit = True
    q = statistics.quantiles(latencies, n=20)
    out["webhook_n"] = len(latencies)
    out["webhook_p50_s"] = round(statistics.median(latencies), 3)
    out["webhook_p95_s"] = round(q[18], 3)
    out["webhook_max_s"] = round(max(latencies), 3)
    return out


if __name__ == "__main__":
    main()
