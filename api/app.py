"""fraudloop's HTTP service: online scoring and Label Studio webhooks (`fraudloop serve`).

Routers live in their own modules; this file only assembles them.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from api import chargebacks, ops, scoring, webhooks
from api.auth import KeyRing
from api.model_holder import champion_holder
from api.rate_limits import Limiter
from fraudloop.policy import load_policy
from fraudloop.settings import Settings, get_settings
from fraudloop.storage import unreachable

RETRY_AFTER_SECONDS = "5"


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
    app.state.rate_limits = Limiter.from_policy(app.state.policy.limits.rate)
    app.include_router(scoring.router)
    app.include_router(ops.router)
    app.include_router(webhooks.router)
    app.include_router(chargebacks.router)

    @app.middleware("http")
    async def _body_limit(request: Request, call_next: Any) -> Any:
        """A body beyond the policy's `limits.max_body_bytes` is refused before it is read."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > app.state.policy.limits.max_body_bytes:
            limit = app.state.policy.limits.max_body_bytes
            return JSONResponse({"detail": f"request body over {limit:,} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        """An outage is a 503 the client retries, never a 500 with a traceback."""
        return JSONResponse(
            {"detail": unreachable(settings.database_url, exc)},
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str | int]:
        """The process answers (liveness); `worker` says which of `serve --workers` did."""
        return {"status": "ok", "worker": os.getpid()}

    return app
