"""Sustained alerts against the store (SQLite and PostgreSQL) and a real local HTTP receiver that
fails (500) and then recovers (200): the alert and its resolution each reach every sink once,
in order, never lost, never doubled, and each is one audit event with value, threshold, window."""

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.alerts import MemorySink, configured_sinks, sink_name
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR
from fraudloop.storage import AlertStateRow, Decision, ReviewTask, insert_ignore, make_engine
from labeling.review import paging
from monitoring.alerting import deliver_alerts, evaluate_rules

POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
T0 = datetime(2026, 11, 2, 9, 0)
EVERY = timedelta(minutes=POLICY.schedules.alerts_minutes)
WINDOW = POLICY.alerts.override_window_minutes
LARGE = POLICY.alerts.categories["large"]
IDS = count()


class Receiver:
    """A webhook receiver on loopback that answers 500 to its first `failures` requests."""

    def __init__(self, failures: int) -> None:
        self.failures, self.requests, self.accepted = failures, 0, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests += 1
                status = 500 if receiver.requests <= receiver.failures else 200
                if status == 200:  # noqa: PLR2004 - HTTP OK
                    receiver.accepted.append(body)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=4)  # two delivery passes of two attempts each
    yield r
    r.close()


def reviews(s: Session, at: datetime, n: int, overridden: int, route: str = "async_review") -> None:
    """n high-impact reviews decided at `at` - 2 min and closed at `at` - 1 min."""
    rows, cases = [], []
    for i in range(n):
        tx = f"tx-{next(IDS)}"
        rows.append(
            {
                "transaction_id": tx,
                "decided_at": at - timedelta(minutes=2),
                "tx_datetime": at - timedelta(minutes=2),
                "amount": LARGE.above + 100,
                "score": 0.8,
                "confidence": 0.8,
                "route": route,
                "recommendation": "reject",
                "final_decision": "human_approve" if i < overridden else "human_reject",
                "policy_version": POLICY.version,
                "reasons": [],
                "input_snapshot": {},
                "reviewer": "ana@x",
                "reviewed_at": at - timedelta(minutes=1),
            }
        )
        cases.append(
            {
                "case_id": f"{tx}:{route}",
                "transaction_id": tx,
                "queue": route,
                "priority": 1.0,
                "created_at": at - timedelta(minutes=2),
                "sla_due_at": at + timedelta(minutes=POLICY.queue_sla(route) - 2),
                "status": "reviewed",
            }
        )
    insert_ignore(s, Decision, rows)
    insert_ignore(s, ReviewTask, cases)


def tick(db_url: str, at: datetime, sinks: dict, overridden: int) -> tuple[list, object]:
    """What the flow does every few minutes: new reviews arrive, evaluate, then deliver."""
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        reviews(s, at, 10, overridden)
        notices = evaluate_rules(s, POLICY, at)
    with Session(engine) as s, s.begin():
        delivery = deliver_alerts(s, sinks, at)
    return notices, delivery


def test_alert_and_resolution_reach_a_failing_then_recovering_webhook_once_each(
    db_url: str, receiver: Receiver
) -> None:
    memory = MemorySink()
    webhook = configured_sinks([receiver.url], attempts=2, max_wait_seconds=0)
    sinks = {"memory": memory, **webhook}
    fired_at = T0 + timedelta(minutes=WINDOW)
    for i in range(WINDOW // 5):  # 30 % of high-impact reviews overridden: breached, not yet long
        notices, delivery = tick(db_url, T0 + i * EVERY, sinks, overridden=3)
        assert notices == [] and delivery.pending == 0
    notices, delivery = tick(db_url, fired_at, sinks, overridden=3)
    assert [(n.kind, n.rule, n.scope) for n in notices] == [("alert", "override_rate", "large")]
    assert delivery.pending == 1 and delivery.failed_sinks == [sink_name(receiver.url)]
    assert len(memory.alerts) == 1 and receiver.accepted == []  # the log-like sink has it once
    _, delivery = tick(db_url, fired_at + EVERY, sinks, overridden=3)  # still 500
    assert delivery.pending == 1 and receiver.accepted == [] and receiver.requests == 4
    _, delivery = tick(db_url, fired_at + 2 * EVERY, sinks, overridden=3)  # recovered
    assert delivery.pending == 0 and delivery.sent == 1
    assert [a["kind"] for a in receiver.accepted] == ["alert"]
    for i in range(3, 6):  # the breach goes on: nothing more
        _, delivery = tick(db_url, fired_at + i * EVERY, sinks, overridden=3)
        assert delivery.sent == 0
    # overrides stop: once the 15-minute measure holds no override, the rule resolves
    kinds = [n.kind for i in range(6, 10) for n in tick(db_url, fired_at + i * EVERY, sinks, 0)[0]]
    assert kinds == ["resolution"]
    assert [a["kind"] for a in receiver.accepted] == ["alert", "resolution"]
    assert [a.kind for a in memory.alerts] == ["alert", "resolution"]
    alert = receiver.accepted[0]
    assert alert["value"] > alert["threshold"] == POLICY.alerts.override_rate_max
    assert alert["contacts"] == POLICY.escalation.matrix[POLICY.alerts.tier].contacts
    assert "secret-token" not in sink_name(receiver.url)  # the name is stored; the URL is not

    with Session(make_engine(db_url)) as s:
        trail = audit.trail(s)
        state = s.get(AlertStateRow, ("override_rate", "large"))
        assert audit.verify(s).n_problems == 0  # the chain (decisions here have no events)
    events = trail[trail["event_type"].isin(["alert", "alert_resolved"])]
    assert list(events["event_type"]) == ["alert", "alert_resolved"]
    details = events.iloc[0]["details"]
    assert (details["threshold"], details["window_minutes"]) == (
        POLICY.alerts.override_rate_max,
        WINDOW,
    )
    assert details["value"] == alert["value"]
    assert state is not None and state.active_since is None and state.unsent == []
    assert state.last_fired_at == fired_at


def test_a_rerun_of_the_same_evaluation_changes_nothing(db_url: str) -> None:
    """Two runs at the same instant (a retried flow run): one alert, one event, one delivery."""
    memory = MemorySink()
    engine = make_engine(db_url)
    for i in range(WINDOW // 5 + 1):
        at = T0 + i * EVERY
        with Session(engine) as s, s.begin():
            reviews(s, at, 10, 3)
    at = T0 + timedelta(minutes=WINDOW)
    for i in range(WINDOW // 5 + 1):
        with Session(engine) as s, s.begin():
            evaluate_rules(s, POLICY, T0 + i * EVERY)
    with Session(engine) as s, s.begin():
        assert evaluate_rules(s, POLICY, at) == []  # already active: de-duplicated
    for _ in range(2):
        with Session(engine) as s, s.begin():
            deliver_alerts(s, {"memory": memory}, at)
    assert len(memory.alerts) == 1
    with Session(engine) as s:
        kinds = s.scalars(select(audit.AuditEvent.event_type)).all()
    assert kinds.count("alert") == 1


def test_an_open_stalled_queue_pages_its_latency(db_url: str) -> None:
    """Nothing closes: open reviews older than 1.5 x their SLA fire the latency rule."""
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        reviews(s, T0, 5, 0, route="sync_review")
        s.execute(update(Decision).values(final_decision=None, reviewed_at=None))
    start = T0 + timedelta(minutes=POLICY.sla_minutes.sync_review * 1.5 + 1)  # created at T0 - 2
    fired = []
    for i in range(POLICY.alerts.latency_window_minutes // 5 + 1):
        with Session(engine) as s, s.begin():
            fired += evaluate_rules(s, POLICY, start + i * EVERY)
    assert [(a.rule, a.scope) for a in fired] == [("review_latency", "sync_review")]


def test_tier3_pages_go_to_the_policy_target_with_the_matrix_contacts() -> None:
    assert isinstance(paging.page_sink(POLICY), type(paging.LogSink()))
    target = POLICY.escalation.model_copy(update={"page_target": "http://127.0.0.1:9/pager"})
    sink = paging.page_sink(POLICY.model_copy(update={"escalation": target}))
    assert isinstance(sink, paging.WebhookSink) and sink.url.endswith("/pager")
    page = paging.Page(
        case_id="c",
        transaction_id="t",
        reason="r",
        amount=1.0,
        sla_minutes=60,
        overdue_minutes=5,
        contacts=POLICY.escalation.matrix[3].contacts,
    )
    alert = paging.page_alert(page, T0)
    assert alert.tier == 3 and alert.contacts == POLICY.escalation.matrix[3].contacts
