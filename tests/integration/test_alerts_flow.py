"""The `evaluate-alerts` flow (a real Prefect run) with its sinks from the settings: while the
webhook answers 500 the run fails and keeps the alert; once it answers 200 the alert is
delivered, once."""

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from flows.alerts import alerts_flow
from fraudloop.errors import ServiceUnavailable
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR, get_settings
from fraudloop.storage import Decision, ReviewTask, insert_ignore, make_engine, migrate

pytestmark = pytest.mark.integration
POLICY = load_policy(PACKAGE_DIR / "policy.yaml")
T0 = datetime(2026, 11, 2, 9, 0)
EVERY = timedelta(minutes=POLICY.schedules.alerts_minutes)
WINDOW = POLICY.alerts.override_window_minutes
ATTEMPTS = 3  # the webhook sink's own retries per delivery (`fraudloop.alerts.WebhookSink`)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A loopback webhook answering 500 to two runs' worth of attempts, then 200."""
    accepted: list[dict] = []
    calls = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls[0] += 1
            ok = calls[0] > 2 * ATTEMPTS
            if ok:
                accepted.append(body)
            self.send_response(200 if ok else 500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/alerts", accepted
    httpd.shutdown()
    httpd.server_close()


def _overridden_reviews(url: str, ticks: int) -> None:
    """Ten high-impact reviews closed before each evaluation, three of them overrides."""
    amount = POLICY.alerts.categories["large"].above + 100
    decisions, cases = [], []
    for tick in range(ticks):
        at = T0 + tick * EVERY
        for i in range(10):
            tx = f"tx-{tick}-{i}"
            decisions.append(
                {
                    "transaction_id": tx,
                    "decided_at": at - timedelta(minutes=2),
                    "tx_datetime": at - timedelta(minutes=2),
                    "amount": amount,
                    "score": 0.8,
                    "confidence": 0.8,
                    "route": "async_review",
                    "recommendation": "reject",
                    "final_decision": "human_approve" if i < 3 else "human_reject",  # noqa: PLR2004
                    "policy_version": POLICY.version,
                    "reasons": [],
                    "input_snapshot": {},
                    "reviewed_at": at - timedelta(minutes=1),
                }
            )
            cases.append(
                {
                    "case_id": f"{tx}:async_review",
                    "transaction_id": tx,
                    "queue": "async_review",
                    "priority": 1.0,
                    "created_at": at - timedelta(minutes=2),
                    "sla_due_at": at + timedelta(hours=2),
                    "status": "reviewed",
                }
            )
    with Session(make_engine(url)) as s, s.begin():
        insert_ignore(s, Decision, decisions)
        insert_ignore(s, ReviewTask, cases)


def test_the_flow_fails_while_the_webhook_does_and_delivers_once_it_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: tuple[str, list[dict]]
) -> None:
    url, accepted = receiver
    store = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FRAUDLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUDLOOP_DB_URL", store)
    monkeypatch.setenv("FRAUDLOOP_ALERT_SINKS", json.dumps(["log", url]))
    get_settings.cache_clear()
    migrate(store)
    ticks = WINDOW // 5 + 4
    _overridden_reviews(store, ticks)
    try:
        for tick in range(WINDOW // 5):  # breached, not for long enough yet
            assert alerts_flow(now=T0 + tick * EVERY) == {"alerts": 0, "resolutions": 0, "sent": 0}
        fired = T0 + timedelta(minutes=WINDOW)
        with pytest.raises(ServiceUnavailable, match="1 alert"):
            alerts_flow(now=fired)  # the log took it, the webhook did not
        with pytest.raises(ServiceUnavailable, match="kept and offered again"):
            alerts_flow(now=fired + EVERY)
        assert accepted == []
        assert alerts_flow(now=fired + 2 * EVERY) == {"alerts": 0, "resolutions": 0, "sent": 1}
        assert alerts_flow(now=fired + 3 * EVERY)["sent"] == 0
    finally:
        get_settings.cache_clear()
    assert [(a["kind"], a["rule"], a["scope"]) for a in accepted] == [
        ("alert", "override_rate", "large")
    ]
