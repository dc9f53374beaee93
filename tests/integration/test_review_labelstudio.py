"""Review tiers against a real Label Studio: queues from the policy, answers returned to the queue,
notes that keep a case open, users fraudloop did not register, webhooks with a reconciliation
pass behind them, a restart mid-sync, no raw PII in any request fraudloop sends, and a reviewer
in a real browser (Playwright + Debian's Chromium) who rejects
the next task with a rationale; the screenshot is kept under test-artifacts/."""

import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from waiting import free_port

from api.app import create_app
from fraudloop import audit, decisions, labels
from fraudloop.errors import ServiceUnavailable
from fraudloop.policy import QUEUES, load_policy
from fraudloop.redaction import find_sensitive
from fraudloop.schema import validate_batch
from fraudloop.settings import PACKAGE_DIR, Settings, get_settings
from fraudloop.storage import AuditEvent, Decision, ReviewTask, make_engine, migrate
from labeling import server
from labeling.client import LabelStudioClient, connect
from labeling.escalation import push_patches
from labeling.outbox import deliver_pending
from labeling.projects import (
    OPEN_FILTER,
    PRIORITY_VIEW,
    ensure_priority_view,
    ensure_projects,
    review_url,
)
from labeling.reconcile import sync_reviews
from labeling.reviewers import add_reviewer
from labeling.webhook import ensure_webhooks
from pipeline.route import ModelInfo, build_decisions
from simulation.reviewers import open_tasks, ui_result

pytestmark = pytest.mark.integration

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
NOW = datetime(2026, 3, 1, 12, 0)
SECRET = "integration-webhook-secret"
REPO = Path(__file__).resolve().parents[2]


def _store(url: str, n: int, first: int = 0) -> None:
    """n review cases with raw sensitive fields on the way in (redaction is under test)."""
    records = [
        {
            "transaction_id": f"tx-{i}",
            "tx_datetime": NOW - timedelta(minutes=i),
            "customer_id": f"c{i % 4}",
            "terminal_id": f"t{i % 3}",
            "amount": 20.0 + 7 * i,
            "card_number": f"4000 0000 0000 {1000 + i}",
            "email": f"person{i}@example.com",
            "ip_address": f"192.168.{i % 250}.{i % 200 + 1}",
        }
        for i in range(first, first + n)
    ]
    frame, rejected = validate_batch(records)
    assert not rejected
    reasons = [
        {"feature": "amount_ratio", "value": 4.2, "contribution": 1.1, "text": "amount 4.2x usual"}
    ] * 3
    scores = [0.8 if i % 2 else 0.9 for i in range(n)]
    scored = pd.DataFrame(
        {"score": scores, "confidence": scores, "reasons": [reasons] * n}, index=frame.index
    )
    batch = build_decisions(frame, scored, POLICY, ModelInfo("m", "5"), NOW)
    with Session(make_engine(url)) as s, s.begin():
        decisions.save(s, batch)


@pytest.fixture(scope="module")
def client(labelstudio: tuple[str, str]) -> Iterator[LabelStudioClient]:
    ls = connect(*labelstudio)
    yield ls
    ls.close()


@pytest.fixture
def queues(client: LabelStudioClient) -> dict[str, int]:
    """Fresh projects per test, so a reused data dir starts from empty queues."""
    prefix = f"tiers-{uuid.uuid4().hex[:8]}"
    descriptions = {q: c.description for q, c in POLICY.queues.items()}
    return ensure_projects(client, list(QUEUES), prefix, descriptions)


@pytest.fixture
def bare_store(tmp_path: Path) -> str:
    """A store that knows no reviewer: nobody's answers count."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    return url


@pytest.fixture
def store(bare_store: str, client: LabelStudioClient, labelstudio: tuple[str, str]) -> str:
    """A store where the API token's user (who posts the tests' answers) is a senior reviewer."""
    _register(bare_store, client, labelstudio, "senior")
    return bare_store


def _register(url: str, client: LabelStudioClient, labelstudio: tuple[str, str], role: str) -> str:
    """The token's user, registered as `fraudloop reviewers add` does; returns its e-mail."""
    me = server.check_token(*labelstudio)
    with Session(make_engine(url)) as s, s.begin():
        add_reviewer(s, client, me, role, "unused: the user exists", "admin", NOW)
    return me


def _deliver(url: str, client: LabelStudioClient, queues: dict[str, int]) -> int:
    with Session(make_engine(url)) as s, s.begin():
        return deliver_pending(
            s,
            client,
            queues,
            50,
            NOW,
            similar_k=5,
            similar_pool=100,
            similar_weights=POLICY.escalation.similar_weights,
        ).delivered


def _sync(url: str, client: LabelStudioClient, queues: dict[str, int], minutes: int = 10) -> Any:
    with Session(make_engine(url)) as s, s.begin():
        result = sync_reviews(s, client, queues, NOW + timedelta(minutes=minutes), POLICY)
    with Session(make_engine(url)) as s, s.begin():
        push_patches(s, client)
    return result


def _annotate(client: LabelStudioClient, task_id: int, choice: str, rationale: bool) -> int:
    result = ui_result(choice, choice)  # the decision alone
    if rationale:
        result.append({**result[0], "from_name": "rationale", "type": "textarea"})
        result[-1]["value"] = {"text": [f"{choice}: the pattern does not fit this customer"]}
    return client.request(
        "POST", f"/api/tasks/{task_id}/annotations/", json={"result": result, "lead_time": 9.0}
    ).json()["id"]


def _mirrored(
    client: LabelStudioClient, task_id: int, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The task once fraudloop's mirror (after the webhook's response) has changed it."""
    deadline = time.monotonic() + 15
    while not done(task := client.request("GET", f"/api/tasks/{task_id}").json()):
        assert time.monotonic() < deadline, f"task {task_id} was not changed: {task['data']}"
        time.sleep(0.2)
    return task


def _task_ids(url: str, queue: str) -> dict[str, int]:
    with Session(make_engine(url)) as s:
        rows = s.execute(
            select(ReviewTask.case_id, ReviewTask.ls_task_id).where(ReviewTask.queue == queue)
        )
        return {case: tid for case, tid in rows if tid is not None}


def _events(url: str, event_type: str | None = None) -> pd.DataFrame:
    with Session(make_engine(url)) as s:
        trail = audit.trail(s)
    return trail if event_type is None else trail[trail["event_type"] == event_type]


def test_queues_follow_the_policy_and_hide_closed_tasks(
    client: LabelStudioClient, queues: dict[str, int]
) -> None:
    prefix = client.sdk.projects.get(id=queues["tier2"]).title.removesuffix(" tier2")
    again = ensure_projects(client, list(QUEUES), prefix, {q: "changed" for q in QUEUES})
    assert again == queues and set(queues) == set(POLICY.queues)
    assert client.sdk.projects.get(id=queues["tier2"]).description.startswith("changed")
    views = client.sdk.views.list(project=queues["sync_review"])
    assert [(v.data["title"], v.data["filters"]) for v in views] == [(PRIORITY_VIEW, OPEN_FILTER)]


def test_invalid_answer_goes_back_to_the_queue_with_its_reason(
    client: LabelStudioClient, queues: dict[str, int], store: str
) -> None:
    _store(store, 2)
    assert _deliver(store, client, queues) == 2
    case, task_id = next(iter(_task_ids(store, "sync_review").items()))
    annotation = _annotate(client, task_id, "approve", rationale=False)  # overrides, no words
    result = _sync(store, client, queues)
    assert (result.invalid, result.applied) == (1, 0)
    task = client.request("GET", f"/api/tasks/{task_id}").json()
    assert task["total_annotations"] == 0  # Label Studio shows it as open again ...
    assert "needs a rationale" in task["data"]["notice"]  # ... with the reason on screen
    assert task_id in [t["id"] for t in open_tasks(client, queues["sync_review"], 10)]
    invalid = _events(store, "invalid_annotation")
    assert invalid.iloc[0]["details"]["annotation_id"] == annotation
    with Session(make_engine(store)) as s:
        assert s.get(Decision, case.split(":")[0]).final_decision is None
    assert _sync(store, client, queues).invalid == 0  # not seen twice


def test_annotate_leaves_a_note_and_the_case_open(
    labelstudio: tuple[str, str], client: LabelStudioClient, queues: dict[str, int], store: str
) -> None:
    _store(store, 2)
    _deliver(store, client, queues)
    case, task_id = next(iter(_task_ids(store, "sync_review").items()))
    with Session(make_engine(store)) as s:
        due = s.get(ReviewTask, case).sla_due_at
    annotation = _annotate(client, task_id, "annotate", rationale=True)
    passes = []
    for minutes in (10, 11):  # the same annotation twice, as a webhook and a reconciliation see it
        with Session(make_engine(store)) as s, s.begin():
            result = sync_reviews(s, client, queues, NOW + timedelta(minutes=minutes), POLICY)
            passes.append((result.annotated, result.already_seen, result.total()))
    assert passes == [(1, 0, 1), (0, 1, 1)]
    with Session(make_engine(store)) as s, s.begin():
        push_patches(s, client)
    task = client.request("GET", f"/api/tasks/{task_id}").json()
    assert task["total_annotations"] == 0  # still to be decided, in the labeling stream ...
    assert task_id in [t["id"] for t in open_tasks(client, queues["sync_review"], 10)]
    assert task["data"]["reviewer_notes"].endswith(  # ... with the note for the next reviewer
        "annotate: the pattern does not fit this customer"
    )
    notes = _events(store, "human_annotate")
    assert len(notes) == 1
    assert notes.iloc[0]["actor"] == server.check_token(*labelstudio)
    assert notes.iloc[0]["review_rationale"] == "annotate: the pattern does not fit this customer"
    assert notes.iloc[0]["details"]["annotation_id"] == annotation
    with Session(make_engine(store)) as s:
        open_case = s.get(ReviewTask, case)
        assert (open_case.status, open_case.sla_due_at) == ("delivered", due)  # SLA clock as is
        assert s.get(Decision, open_case.transaction_id).final_decision is None
    assert _sync(store, client, queues).total() == 0


def test_an_unregistered_user_decides_nothing(
    labelstudio: tuple[str, str], client: LabelStudioClient, queues: dict[str, int], bare_store: str
) -> None:
    """The token's user is Label Studio's admin, which fraudloop did not register (yet)."""
    _store(bare_store, 2)
    _deliver(bare_store, client, queues)
    case, task_id = next(iter(_task_ids(bare_store, "sync_review").items()))
    _annotate(client, task_id, "reject", rationale=True)  # a valid answer in every other way
    result = _sync(bare_store, client, queues)
    assert (result.invalid, result.applied) == (1, 0)
    task = client.request("GET", f"/api/tasks/{task_id}").json()
    assert task["total_annotations"] == 0
    assert "is not a fraudloop reviewer" in task["data"]["notice"]
    invalid = _events(bare_store, "invalid_annotation")
    me = server.check_token(*labelstudio)
    assert list(invalid["actor"]) == [me]
    assert invalid.iloc[0]["details"]["problem"].startswith(f"{me} is not a fraudloop reviewer")
    with Session(make_engine(bare_store)) as s:
        assert s.get(Decision, case.split(":")[0]).final_decision is None
    _register(bare_store, client, labelstudio, "reviewer")  # `fraudloop reviewers add`
    _annotate(client, task_id, "reject", rationale=True)
    assert _sync(bare_store, client, queues, minutes=12).applied == 1


class _Api:
    """fraudloop's API in a thread, as `fraudloop serve` runs it."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/webhooks/labelstudio"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "_Api":
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _settings(store: str, labelstudio: tuple[str, str], tmp_path: Path) -> Settings:
    url, token = labelstudio
    return Settings(
        home=tmp_path,
        db_url=store,
        labelstudio_url=url,
        labelstudio_token=token,
        webhook_secret=SECRET,
    )


def _wait_for_events(url: str, n: int, timeout: float = 10.0) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reviews = _events(url, "review")
        if len(reviews) >= n:
            return reviews
        time.sleep(0.1)
    return _events(url, "review")


def test_webhook_applies_answers_and_reconciliation_recovers_a_lost_one(
    labelstudio: tuple[str, str],
    client: LabelStudioClient,
    queues: dict[str, int],
    store: str,
    tmp_path: Path,
) -> None:
    _store(store, 6)
    _deliver(store, client, queues)
    tasks = list(_task_ids(store, "async_review").values())
    assert len(tasks) == 3
    settings = _settings(store, labelstudio, tmp_path)
    with _Api(settings) as api:
        assert ensure_webhooks(client, queues.values(), api.url, SECRET) == len(queues)
        assert ensure_webhooks(client, queues.values(), api.url, SECRET) == 0
        refused = httpx.post(api.url, json={"action": "ANNOTATION_CREATED"})
        assert refused.status_code == 401  # no secret, no entry
        _annotate(client, tasks[0], "reject", rationale=False)
        reviews = _wait_for_events(store, 1)
        assert len(reviews) == 1  # arrived through the webhook, no sync ran
        _annotate(client, tasks[2], "approve", rationale=False)  # invalid: back to the queue
        _mirrored(client, tasks[2], lambda t: t["total_annotations"] == 0)
        assert len(_events(store, "invalid_annotation")) == 1
        noted = next(iter(_task_ids(store, "sync_review").values()))
        _annotate(client, noted, "annotate", rationale=True)  # a note: stays in the queue
        task = _mirrored(client, noted, lambda t: "No notes" not in t["data"]["reviewer_notes"])
        assert task["data"]["reviewer_notes"].endswith("the pattern does not fit this customer")
        assert task["total_annotations"] == 0
        assert len(_events(store, "human_annotate")) == 1
    # receiver down: Label Studio saves the answer and drops the webhook silently
    _annotate(client, tasks[1], "approve", rationale=True)
    time.sleep(1.5)
    assert len(_events(store, "review")) == 1
    result = _sync(store, client, queues)
    assert (result.applied, result.already_seen) == (1, 1)
    again = _sync(store, client, queues)
    assert (again.applied, again.already_seen) == (0, 2)
    reviews = _events(store, "review")
    assert len(reviews) == 2 and reviews["transaction_id"].is_unique
    assert set(reviews["actor"]) == {server.check_token(*labelstudio)}


def test_restart_mid_sync_loses_nothing_and_duplicates_nothing(
    labelstudio: tuple[str, str],
    labelstudio_dir: Path,
    client: LabelStudioClient,
    queues: dict[str, int],
    store: str,
) -> None:
    _store(store, 6)
    assert _deliver(store, client, queues) == 6
    for queue in ("sync_review", "async_review"):
        for task_id in list(_task_ids(store, queue).values())[:2]:
            _annotate(client, task_id, "reject", rationale=False)
    first = {"sync_review": queues["sync_review"]}
    assert _sync(store, client, first).applied == 2  # half of the pass is committed ...
    url, token = labelstudio
    server.stop(labelstudio_dir)  # ... then the server goes away
    _store(store, 3, first=100)  # new cases arrive meanwhile
    try:
        with pytest.raises(ServiceUnavailable):
            _sync(store, client, queues)
        assert _deliver(store, client, queues) == 0  # kept in the outbox
    finally:
        host, port = url.removeprefix("http://").split(":")
        venv = get_settings().labelstudio_venv
        server.start(
            venv=venv if venv.is_absolute() else REPO / venv,
            data_dir=labelstudio_dir,
            host=host,
            port=int(port),
            username="reviewer@fraudloop.test",  # as tests/integration/conftest.py
            password="integration-only",
            token=token,
        )
    assert _deliver(store, client, queues) == 3
    result = _sync(store, client, queues)
    assert (result.applied, result.already_seen) == (2, 2)
    reviews = _events(store, "review")
    assert len(reviews) == 4 and reviews["transaction_id"].is_unique
    ls_tasks = sum(
        client.request("GET", "/api/tasks", params={"project": p}).json()["total"]
        for p in queues.values()
    )
    with Session(make_engine(store)) as s:
        assert ls_tasks == s.scalar(select(func.count()).select_from(ReviewTask)) == 9
        # 9 cases, 4 reviews, and the reviewer's registration
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 9 + 4 + 1


def test_nothing_sent_to_label_studio_carries_a_raw_sensitive_field(
    labelstudio: tuple[str, str], queues: dict[str, int], store: str
) -> None:
    """Every request body and query fraudloop sends, through delivery, sync, returns, escalation."""
    sent: list[str] = []

    def capture(request: httpx.Request) -> None:
        sent.append(f"{request.url.path}?{request.url.query.decode()} {request.content.decode()}")

    spy = connect(*labelstudio)
    spy.http.event_hooks["request"].append(capture)
    _store(store, 8)
    _deliver(store, spy, queues)
    tasks = _task_ids(store, "sync_review")
    ids = list(tasks.values())
    _annotate(spy, ids[0], "reject", rationale=False)  # decided: similar case for later ones
    _annotate(spy, ids[1], "approve", rationale=False)  # invalid: returned to the queue
    _annotate(spy, ids[2], "escalate", rationale=True)  # to Tier 2
    _annotate(spy, ids[3], "annotate", rationale=True)  # a note shown with the reviewer's name
    _sync(store, spy, queues)
    _deliver(store, spy, queues)  # the Tier 2 case, with similar cases
    assert _task_ids(store, "tier2")
    imports = [json.loads(s.split(" ", 1)[1]) for s in sent if "/import?" in s]
    shown = [t["data"] for body in imports for t in body]
    assert any("<table" in d["similar_html"] for d in shown)  # the check saw real content
    assert len(sent) > 10
    leaks = {s[:80]: find_sensitive(s) for s in sent if find_sensitive(s)}
    assert leaks == {}
    spy.close()


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"the browser test needs Chromium ({CHROMIUM} is missing): "
    "`apt-get install -y chromium` (Debian; a Playwright browser download does not work here)",
)
def test_reviewer_rejects_the_next_task_in_the_browser(
    labelstudio: tuple[str, str], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, token = labelstudio
    client = connect(url, token)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(store)
    _register(store, client, labelstudio, "reviewer")  # answers the first cases by API
    queues = ensure_projects(client, list(QUEUES), f"browser-{uuid.uuid4().hex[:8]}")
    _store(store, 6)  # decided first, so the next cases have similar past cases to show
    _deliver(store, client, queues)
    for task_id in _task_ids(store, "async_review").values():
        _annotate(client, task_id, "reject", rationale=False)
    _sync(store, client, queues)
    _store(store, 2, first=50)
    _deliver(store, client, queues)

    email, password = f"ana-{uuid.uuid4().hex[:6]}@fraudloop.test", "reviewer-pass-123"
    with Session(make_engine(store)) as s, s.begin():
        add_reviewer(s, client, email, "reviewer", password, "admin", NOW)
    project = queues["sync_review"]
    start = review_url(url, project, ensure_priority_view(client, project))

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{url}/user/login")
        page.fill('input[name="email"]', email)
        page.fill('input[name="password"]', password)
        page.click('button[type="submit"]')
        page.wait_for_url(lambda u: "/user/login" not in u, timeout=30_000)
        page.goto(start)
        expect(page.get_by_text("fraud probability").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("amount 4.2x usual").first).to_be_visible()
        expect(page.get_by_text("rejected (fraud)").first).to_be_visible()  # similar cases
        expect(page.get_by_text("SLA due").first).to_be_visible()
        page.locator("label", has_text="reject").first.click()
        page.fill('textarea[name="rationale"]', "Card testing pattern on a new terminal.")
        page.screenshot(path=str(ARTIFACTS / "review-browser.png"), full_page=True)
        page.click('button[data-testid="bottombar-submit-button"]')
        page.wait_for_timeout(1500)
        browser.close()

    result = _sync(store, client, queues, minutes=20)
    assert result.applied == 1
    with Session(make_engine(store)) as s:
        trail = audit.trail(s)
    mine = trail[(trail["event_type"] == "review") & (trail["actor"] == email)]
    assert list(mine["decision"]) == ["human_reject"]
    assert mine.iloc[0]["review_rationale"] == "Card testing pattern on a new terminal."
    assert mine.iloc[0]["transaction_id"] in {
        case.split(":")[0] for case in _task_ids(store, "sync_review")
    }
    assert (ARTIFACTS / "review-browser.png").stat().st_size > 10_000
    client.close()


def test_forged_webhooks_decide_nothing(
    labelstudio: tuple[str, str],
    client: LabelStudioClient,
    queues: dict[str, int],
    store: str,
    tmp_path: Path,
) -> None:
    """A webhook with a default or missing secret is refused outright; a payload is only a
    hint: the annotation is read back from Label Studio by id, so a made-up one decides nothing
    and a real one counts as Label Studio holds it, whatever the payload claims."""
    _store(store, 2)
    _deliver(store, client, queues)
    case, task_id = next(iter(_task_ids(store, "sync_review").items()))
    tx_id = case.split(":")[0]
    forged = {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": 987_654, "result": ui_result("approve", "approve"), "completed_by": 1},
        "task": {"id": task_id, "data": {"case_id": case}},
    }
    for secret, header in (("change-me-webhook-secret", "change-me-webhook-secret"), ("", "")):
        unsafe = _settings(store, labelstudio, tmp_path).model_copy(
            update={"webhook_secret": secret}
        )
        with _Api(unsafe) as api:
            answer = httpx.post(api.url, json=forged, headers={"X-Fraudloop-Secret": header})
        assert answer.status_code == 503, answer.text
        assert "FRAUDLOOP_WEBHOOK_SECRET" in answer.json()["detail"]
    with _Api(_settings(store, labelstudio, tmp_path)) as api:
        headers = {"X-Fraudloop-Secret": SECRET}
        wrong = httpx.post(api.url, json=forged, headers={"X-Fraudloop-Secret": SECRET + "x"})
        assert wrong.status_code == 401
        made_up = httpx.post(api.url, json=forged, headers=headers)
        assert made_up.json() == {"outcome": "unknown_annotation"}
        for bad in ({"action": "ANNOTATION_CREATED", "annotation": []}, {"action": 5}):
            assert httpx.post(api.url, json=bad, headers=headers).json() == {"outcome": "ignored"}
        with Session(make_engine(store)) as s:
            assert s.get(Decision, tx_id).final_decision is None
        assert _events(store, "review").empty
        real = _annotate(client, task_id, "reject", rationale=False)  # agrees with the model
        claimed = {**forged, "annotation": {**forged["annotation"], "id": real}}
        assert httpx.post(api.url, json=claimed, headers=headers).json()["outcome"] == "applied"
    me = server.check_token(*labelstudio)
    with Session(make_engine(store)) as s:
        decided = s.get(Decision, tx_id)
        assert (decided.final_decision, decided.reviewer) == ("human_reject", me)
        assert labels.labels(s)["is_fraud"].tolist() == [1]


def test_a_case_label_studio_must_not_see_is_held_and_the_rest_go_on(
    client: LabelStudioClient, queues: dict[str, int], store: str
) -> None:
    """A transaction stored before the door refused card-like ids (or with one that slipped
    through another way) once stalled every delivery after it."""
    _store(store, 4)
    poisoned = "tx-1"
    with Session(make_engine(store)) as s, s.begin():
        row = s.get(Decision, poisoned)
        row.input_snapshot = {**row.input_snapshot, "customer_id": "4111111111111111"}
    assert _deliver(store, client, queues) == 3
    with Session(make_engine(store)) as s:
        held = s.scalars(select(ReviewTask).where(ReviewTask.status == "held")).all()
        assert [t.transaction_id for t in held] == [poisoned]
        assert "look like a raw card number" in (held[0].last_error or "")
    events = _events(store, "delivery_held")
    assert list(events["transaction_id"]) == [poisoned]
    assert _deliver(store, client, queues) == 0  # not retried forever, not stalling others
    assert len(_events(store, "delivery_held")) == 1
