"""Alerts and the sinks they go to; sinks are pluggable so operators choose log, webhook or both."""

import hashlib
import logging
from datetime import datetime
from typing import Literal, Protocol
from urllib.parse import urlparse

import httpx
from pydantic import BaseModel
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from fraudloop.errors import FraudloopError, ServiceUnavailable

log = logging.getLogger(__name__)


class Alert(BaseModel):
    """One fired rule, with the value and threshold that fired it so the audit event explains it."""

    rule: str
    scope: str
    value: float
    threshold: float
    window_minutes: int | None
    at: datetime
    message: str
    kind: Literal["alert", "resolution"] = "alert"  # a resolution: the rule's alert has cleared
    tier: int | None = None  # who it is for (`escalation.matrix` in the policy) ...
    contacts: list[str] = []  # ... and how the receiver reaches them


class AlertSink(Protocol):
    def send(self, alert: Alert) -> None: ...


class LogSink:
    """Writes alerts to Python logging; the sink that always works."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger

    def send(self, alert: Alert) -> None:
        self.logger.warning("ALERT %s [%s]: %s", alert.rule, alert.scope, alert.message)


class MemorySink:
    """Keeps alerts in a list, for tests and for showing them in the QA report."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


def _transient(exc: BaseException) -> bool:
    """Retry network failures and server errors; a 4xx means the request is wrong, not late."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500  # noqa: PLR2004 - HTTP server errors
    return isinstance(exc, httpx.TransportError)


class WebhookSink:
    """POSTs each alert as JSON to a chat/paging endpoint, retrying transient errors."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client | None = None,
        attempts: int = 3,
        max_wait_seconds: float = 8.0,
    ) -> None:
        self.url = url
        self.client = client or httpx.Client(timeout=10.0)
        self._post = retry(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.5, max=max_wait_seconds),
            reraise=True,
        )(self._post_once)

    def _post_once(self, payload: dict) -> None:
        self.client.post(self.url, json=payload).raise_for_status()

    def send(self, alert: Alert) -> None:
        try:
            self._post(alert.model_dump(mode="json"))
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"alert webhook {self.url} failed ({exc}); check the URL or use the log sink"
            ) from exc


def sink_name(spec: str) -> str:
    """A stable name for a configured sink, safe to store and audit: a webhook URL often
    carries its credential in the path, so only its host and a digest of the whole URL show."""
    if spec == "log":
        return "log"
    digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
    return f"webhook:{urlparse(spec).hostname}:{digest}"


def configured_sinks(
    specs: list[str], attempts: int = 3, max_wait_seconds: float = 8.0
) -> dict[str, AlertSink]:
    """The sinks `Settings.alert_sinks` names ("log" or webhook URLs), by `sink_name`."""
    sinks: dict[str, AlertSink] = {}
    for spec in specs:
        if spec == "log":
            sinks["log"] = LogSink()
        elif urlparse(spec).scheme in ("http", "https"):
            sinks[sink_name(spec)] = WebhookSink(
                spec, attempts=attempts, max_wait_seconds=max_wait_seconds
            )
        else:
            raise FraudloopError(
                f'FRAUDLOOP_ALERT_SINKS: {spec!r} is neither "log" nor an http(s) webhook URL'
            )
    if not sinks:
        raise FraudloopError('FRAUDLOOP_ALERT_SINKS is empty: alerts would go nowhere; use ["log"]')
    return sinks
