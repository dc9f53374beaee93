"""Shared fixtures: databases on SQLite and PostgreSQL, quiet third-party telemetry; a run ends
with what this machine could not test and a clean exit."""

import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from flows.runtime import stop_ephemeral_api
from fraudloop.process import apply_process_defaults
from fraudloop.storage import migrate

PG_ADMIN_URL = os.environ.get(
    "FRAUDLOOP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

apply_process_defaults()
# Prefect's ephemeral API keeps its database here: reused across runs (first start migrates, ~20 s).
os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "fraudloop-test-prefect"))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database per test, dropped afterwards."""
    name = f"fraudloop_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


# PostgreSQL is a real service: its variant runs in the full suite, SQLite's in `make test-fast`
_POSTGRES = pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])


@pytest.fixture(params=["sqlite", _POSTGRES])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """The same storage test on SQLite and on PostgreSQL, migrated to head."""
    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    migrate(url)
    return url


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_server() -> Iterator[None]:
    """Stop Prefect's ephemeral API server at the end of the session, while its output is still
    captured like any test's.

    Prefect's console handler keeps the stream it was configured with: in a test run, pytest's
    capture, closed by the time Prefect's own atexit hook logs "Stopping temporary server", which
    then ends the run with "--- Logging error ---" (`flows.runtime.stop_ephemeral_api`).
    """
    yield
    stop_ephemeral_api()


def _skip_reason(report: pytest.TestReport) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """Last, after pytest's summary: what was skipped on this machine and what adds it.

    Skips here mean something is missing beside the code (Chromium, the shared handbook data);
    each reason names it and the command or place that adds it.
    """
    yield
    reasons = Counter(_skip_reason(r) for r in terminalreporter.stats.get("skipped", []))
    if not reasons:
        return
    terminalreporter.section("not tested on this machine", sep="-", yellow=True)
    for reason, n in sorted(reasons.items()):
        terminalreporter.line(f"skipped {n} test{'s' if n > 1 else ''}: {reason}", yellow=True)
