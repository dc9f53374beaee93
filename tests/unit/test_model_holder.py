"""The API's warm champion: swapped when the alias moves, kept through a registry outage."""

import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from api.model_holder import ModelHolder


@dataclass
class FakeModel:
    name: str
    version: int


class Registry:
    """Stands in for MLflow (the integration tests use the real one)."""

    def __init__(self) -> None:
        self.alias: int | None = 1
        self.down = False
        self.loads = 0

    def alias_version(self) -> int | None:
        if self.down:
            raise ConnectionError("registry unreachable")
        return self.alias

    def load(self) -> FakeModel:
        self.loads += 1
        return FakeModel("fraud-detector", self.alias_version() or 0)


Setup = tuple[Registry, list[float], ModelHolder]


@pytest.fixture
def setup() -> Setup:
    registry, now = Registry(), [0.0]
    holder = ModelHolder(
        registry.load, registry.alias_version, 30.0, clock=lambda: now[0], background=_inline
    )
    return registry, now, holder


def _inline(work: Callable[[], None]) -> None:
    """The refresh at once, so each step below sees its outcome (production: a thread)."""
    work()


def test_checks_the_alias_at_most_every_refresh_interval(setup: Setup) -> None:
    registry, now, holder = setup
    assert holder.current().version == 1
    registry.alias = 2
    now[0] = 29.9
    assert holder.current().version == 1  # not yet time to ask
    now[0] = 30.0
    assert holder.current().version == 2
    assert holder.current().version == 2 and registry.loads == 2  # no reload while unchanged


def test_outage_keeps_the_loaded_model_and_says_why(setup: Setup) -> None:
    registry, now, holder = setup
    holder.current()
    registry.down = True
    now[0] = 60.0
    assert holder.current().version == 1
    status = holder.status()
    assert not status.fallback and "unreachable" in (status.error or "")


def test_no_model_at_start_means_fallback_until_the_registry_returns(setup: Setup) -> None:
    registry, now, holder = setup
    registry.down = True
    assert holder.current() is None and holder.status().fallback
    registry.down = False
    now[0] = 30.0
    assert holder.current().version == 1 and holder.status().error is None


def test_alias_removed_means_fallback(setup: Setup) -> None:
    registry, now, holder = setup
    holder.current()
    registry.alias = None
    assert holder.refresh_now().fallback


def test_a_request_never_waits_for_a_slow_registry() -> None:
    """A refresh that hangs (registry unreachable, connect timeout running) is not a request's
    wait: it runs beside the requests, which keep the model in hand."""
    registry, now = Registry(), [0.0]
    holder = ModelHolder(registry.load, registry.alias_version, 30.0, clock=lambda: now[0])
    assert holder.current().version == 1  # startup: the first load is waited for
    entered, release = threading.Event(), threading.Event()

    def hanging() -> int | None:
        entered.set()
        release.wait(timeout=30)
        raise ConnectionError("registry unreachable")

    holder._alias_version = hanging
    now[0] = 30.0
    assert holder.current().version == 1  # returns while the check hangs
    assert entered.wait(timeout=10)
    assert holder.current().version == 1  # and again: no second check is started meanwhile
    release.set()
    for _ in range(100):
        if holder.status().error:
            break
        threading.Event().wait(0.05)
    assert "unreachable" in (holder.status().error or "")


def test_a_new_version_makes_its_first_prediction_before_requests_get_it() -> None:
    """The swap waits for the new model's first prediction (made beside the requests), so no
    request pays a fresh model's first call; one that fails to predict is never swapped in."""
    registry, now = Registry(), [0.0]
    warmed: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def warm(model: FakeModel) -> None:
        if model.version == 1:  # startup
            warmed.append(1)
            return
        entered.set()
        release.wait(timeout=30)
        if model.version == 3:  # noqa: PLR2004 - the broken artifact below
            raise ValueError("broken artifact")
        warmed.append(model.version)

    holder = ModelHolder(
        registry.load, registry.alias_version, 30.0, clock=lambda: now[0], warm=warm
    )
    assert holder.current().version == 1 and warmed == [1]
    registry.alias, now[0] = 2, 30.0
    assert holder.current().version == 1  # the check starts beside this request
    assert entered.wait(timeout=10)
    assert holder.current().version == 1  # v2 is loaded, its first prediction still running
    release.set()
    _until(lambda: holder.current().version == 2)  # noqa: PLR2004 - the new champion
    assert warmed == [1, 2]
    entered.clear()
    registry.alias, now[0] = 3, 60.0
    holder.current()
    assert entered.wait(timeout=10)
    _until(lambda: holder.status().error is not None)
    assert holder.current().version == 2 and "broken artifact" in (holder.status().error or "")


def test_workers_check_the_alias_at_their_own_phase() -> None:
    registry, now = Registry(), [0.0]
    holder = ModelHolder(
        registry.load,
        registry.alias_version,
        30.0,
        clock=lambda: now[0],
        background=_inline,
        phase=10.0,
    )
    holder.current()
    registry.alias, now[0] = 2, 19.9
    assert holder.current().version == 1
    now[0] = 20.0  # 30 s after startup less the phase
    assert holder.current().version == 2  # noqa: PLR2004 - the new champion
    now[0] = 49.9
    assert holder.current().version == 2 and registry.loads == 2  # noqa: PLR2004 - every 30 s


def _until(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        threading.Event().wait(0.05)
    pytest.fail("not within 10 s")
