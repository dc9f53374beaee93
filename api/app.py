"""fraudloop's HTTP service: online scoring and Label Studio webhooks (`fraudloop serve`).

Routers live in their own modules; this file only assembles them.
"""

from fastapi import FastAPI

from api import webhooks
from fraudloop.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="fraudloop", version="0.1.0")
    app.state.settings = settings
    app.include_router(webhooks.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The process answers (liveness)."""
        return {"status": "ok"}

    return app
