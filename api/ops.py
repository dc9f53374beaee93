"""Operations: readiness (database and model, or fallback mode stated) and model reload."""

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.auth import Permission, Principal, require
from fraudloop.storage import engine_for

router = APIRouter(tags=["ops"])


@router.get("/readyz", responses={503: {"description": "the decision store is unreachable"}})
def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers; says whether decisions use the model or fallback rules."""
    state = request.app.state
    model = state.models.status()
    body: dict[str, Any] = {
        "database": "ok",
        "mode": "fallback" if model.fallback else "model",
        "model": asdict(model),
        "policy_version": state.policy.version,
        "rate_limited": dict(state.rate_limits.refused),
    }
    try:
        with engine_for(state.settings.database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means: not ready
        body["database"] = f"unreachable: {type(exc).__name__}"
        return JSONResponse({"status": "not ready", **body}, status_code=503)
    return JSONResponse({"status": "ready", **body})


@router.post("/v1/model/reload")
def reload_model(
    request: Request,
    _: Annotated[Principal, Depends(require(Permission.MANAGE_MODEL))],
) -> dict[str, Any]:
    """Ask the registry now where `champion` points (instead of waiting for the next check)."""
    return asdict(request.app.state.models.refresh_now())
