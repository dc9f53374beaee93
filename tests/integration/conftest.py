"""A real Label Studio server for the integration tests, shared by the whole session.

Set FRAUDLOOP_TEST_LS_DIR to keep its data dir between runs: the first start migrates a fresh
database (about a minute), later starts take about ten seconds.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from waiting import free_port

from fraudloop.settings import get_settings
from labeling import server

REPO = Path(__file__).resolve().parents[2]
TOKEN = "0123456789abcdef0123456789abcdef01234567"
PASSWORD = "integration-only"


@pytest.fixture(scope="session")
def labelstudio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session server's data dir (tests that restart it need it)."""
    reused = os.environ.get("FRAUDLOOP_TEST_LS_DIR")
    return Path(reused) if reused else tmp_path_factory.mktemp("labelstudio")


@pytest.fixture(scope="session")
def labelstudio(labelstudio_dir: Path) -> Iterator[tuple[str, str]]:
    """(url, token) of a running server; stopped, and checked stopped, at the end."""
    data_dir = labelstudio_dir
    server.stop(data_dir)  # a server left over by an interrupted run must not share the database
    venv = get_settings().labelstudio_venv
    port = free_port()
    server.start(
        venv=venv if venv.is_absolute() else REPO / venv,
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        username="reviewer@fraudloop.test",
        password=PASSWORD,
        token=TOKEN,
    )
    url = f"http://127.0.0.1:{port}"
    yield url, TOKEN
    assert server.stop(data_dir)
    assert not server.is_up(url)


def point_fraudloop_at(
    monkeypatch: pytest.MonkeyPatch, home: Path, url: str, token: str, policy: Path, prefix: str
) -> None:
    """Settings for one test's world: its home, a Label Studio, a policy file, its own queues."""
    monkeypatch.setenv("FRAUDLOOP_HOME", str(home))
    monkeypatch.setenv("FRAUDLOOP_LABELSTUDIO_URL", url)
    monkeypatch.setenv("FRAUDLOOP_LABELSTUDIO_TOKEN", token)
    monkeypatch.setenv("FRAUDLOOP_LABELSTUDIO_PASSWORD", PASSWORD)
    monkeypatch.setenv("FRAUDLOOP_POLICY_FILE", str(policy))
    monkeypatch.setenv("FRAUDLOOP_LABELSTUDIO_PROJECT_PREFIX", prefix)
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def fraudloop_env() -> Callable[..., None]:
    """`point_fraudloop_at`, as a fixture so test modules need not import this conftest."""
    return point_fraudloop_at
