"""fraudloop's HTTP service: online scoring and Label Studio webhooks (`fraudloop serve`).

Routers live in their own modules; this file only assembles them.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import ops, scoring, webhooks
from api.auth import KeyRing
from api.model_holder import champion_holder
from fraudloop.policy import load_policy
from fraudloop.settings import Settings, get_settings


@asynccontextmanager
async def _warm(app: FastAPI) -> AsyncIterator[None]:
    """Load the champion before the first request (or state fallback mode in /readyz)."""
    app.state.models.current()
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="fraudloop", version="0.1.0", lifespan=_warm)
    app.state.settings = settings
    app.state.policy = load_policy(settings.policy_file)
    app.state.keys = KeyRing.from_settings(settings)
    app.state.models = champion_holder(settings)
    app.include_router(scoring.router)
    app.include_router(ops.router)
    app.include_router(webhooks.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The process answers (liveness)."""
        return {"status": "ok"}

    return app
