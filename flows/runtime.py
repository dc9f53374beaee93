"""What every flow needs, built from the one settings object: policy, database, services."""

import sys
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from fraudloop.clock import utcnow
from fraudloop.policy import Policy, load_policy
from fraudloop.settings import Settings, get_settings
from fraudloop.storage import migrate
from labeling import server
from labeling.client import LabelStudioClient, connect
from labeling.projects import ensure_projects
from labeling.webhook import ensure_webhooks


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def policy(self) -> Policy:
        return load_policy(self.settings.policy_file)

    @property
    def db_url(self) -> str:
        return self.settings.database_url

    def clock(self) -> datetime:
        """Now, for a run not given its own time (backfills and tests pass one)."""
        return utcnow()

    def labelstudio(self) -> LabelStudioClient:
        s = self.settings
        return connect(s.labelstudio_url, s.labelstudio_token)

    def labelstudio_down(self) -> str | None:
        """What to tell a user when Label Studio does not answer (None when it does)."""
        url = self.settings.labelstudio_url
        if server.is_up(url):
            return None
        return f"Label Studio at {url} is not answering; start it with `fraudloop up` (review work waits in the outbox)"

    def projects(self, client: LabelStudioClient) -> dict[str, int]:
        """One project per policy queue (Tier 1 sync/async, second sign-off, Tier 2)."""
        s = self.settings
        queues = {name: q.description for name, q in self.policy.queues.items()}
        ids = ensure_projects(client, list(queues), s.labelstudio_project_prefix, queues)
        if s.webhook_url:  # Label Studio is given the secret: it must be this install's own
            s.require_secrets()
            ensure_webhooks(client, ids.values(), s.webhook_url, s.webhook_secret)
        return ids


def runtime(settings: Settings | None = None) -> Runtime:
    """The runtime for a flow run; migrates the store so a fresh home just works."""
    rt = Runtime(settings or get_settings())
    rt.settings.home.mkdir(parents=True, exist_ok=True)
    migrate(rt.db_url)
    return rt


def stop_ephemeral_api() -> None:
    """Stop Prefect's temporary API server of this process, if one was started, while output
    is still open: its own exit hook logs after the console (or pytest's capture) is closed.

    As `prefect_test_harness` does: send the queued logs and events, then stop the server.
    """
    server = sys.modules.get("prefect.server.api.server")
    if server is None:  # no flow ran in this process
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)
    server.SubprocessASGIServer().stop()  # the process's ephemeral server (no port: the default)
