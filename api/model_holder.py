"""The champion kept warm in the API process, swapped when the `champion` alias moves.

A request never waits for the registry: at most once every `refresh_seconds` a request starts
a background check of where the alias points (every request, that one included, keeps scoring
with the model in hand), which loads a new version if it moved and makes its first prediction
there, before the swap (a fresh model's first call builds what later calls reuse). Only the
first load, at startup, is waited for. Workers of one server check at different moments within
the interval (`phase`), so a moved alias never has all of them loading at once. A registry
outage keeps the loaded model; with no model at all, decisions use the policy's fallback rules
and say so.
"""

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from fraudloop.process import tune_for_scoring
from fraudloop.settings import Settings
from models.registry import CHAMPION, alias_version
from models.scoring import ScoringModel, load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelStatus:
    name: str | None
    version: int | None
    fallback: bool
    error: str | None


class ModelHolder:
    def __init__(
        self,
        load: Callable[[], ScoringModel],
        alias_version: Callable[[], int | None],
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        background: Callable[[Callable[[], None]], None] | None = None,
        warm: Callable[[ScoringModel], object] | None = None,
        phase: float = 0.0,
    ) -> None:
        self._load, self._alias_version = load, alias_version
        self._refresh_seconds, self._clock = refresh_seconds, clock
        self._background = background or _in_thread
        self._warm = warm or (lambda _: None)
        self._phase = phase % refresh_seconds
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self.model: ScoringModel | None = None
        self.error: str | None = None

    def current(self) -> ScoringModel | None:
        """The model to score with now (None: fallback rules); refreshes when it is time."""
        due = self._checked_at is None or (
            self._clock() - self._checked_at >= self._refresh_seconds
        )
        if due and self._lock.acquire(blocking=False):
            if self._checked_at is None:  # the first load (startup): there is nothing to serve yet
                self._locked_refresh()
                self._checked_at = self._clock() - self._phase  # the next check: this much sooner
            else:
                self._checked_at = self._clock()  # no second background check meanwhile
                self._background(self._locked_refresh)
        return self.model

    def _locked_refresh(self) -> None:
        """`_refresh` holding the lock `current` took."""
        try:
            self._refresh()
        finally:
            self._lock.release()

    def refresh_now(self) -> ModelStatus:
        with self._lock:
            self._refresh()
        return self.status()

    def status(self) -> ModelStatus:
        model = self.model
        return ModelStatus(
            name=model.name if model else None,
            version=model.version if model else None,
            fallback=model is None,
            error=self.error,
        )

    def _refresh(self) -> None:
        self._checked_at = self._clock()
        try:
            version = self._alias_version()
            if version is None:
                self.model, self.error = None, "no champion in the registry"
            elif self.model is None or self.model.version != version:
                model = self._load()
                self._warm(model)
                self.model, self.error = model, None
                log.info("serving %s v%s", self.model.name, self.model.version)
        except Exception as exc:  # registry down or bad artifact: keep what we have
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("champion refresh failed, %s: %s", self._mode(), self.error)

    def _mode(self) -> str:
        return "keeping the loaded model" if self.model else "deciding with fallback rules"


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="champion-refresh", daemon=True).start()


def first_prediction(model: ScoringModel) -> None:
    """One row through the model, as a request would send it."""
    model.predict(pd.DataFrame([dict.fromkeys(model.features, 0.0)]))


def champion_holder(settings: Settings) -> ModelHolder:
    """The registry's `champion`, checked every `settings.model_refresh_seconds` from a random
    phase (each worker its own); the worker is tuned for scoring once a model is loaded."""
    uri, name = settings.tracking_uri, settings.model_name

    def load() -> ScoringModel:
        model = load_model(uri, name, CHAMPION)
        tune_for_scoring()
        return model

    return ModelHolder(
        load=load,
        alias_version=lambda: alias_version(name, CHAMPION, tracking_uri=uri),
        refresh_seconds=settings.model_refresh_seconds,
        warm=first_prediction,
        phase=random.uniform(0.0, settings.model_refresh_seconds),
    )
