"""API keys with roles: who may score, read decisions, read their audit trail, reload the model.

Scoring needs a key too: it writes decisions that payments act on, and decisions are idempotent
by the caller's transaction id, so an anonymous caller could pin an "allow" on an id before the
real transaction arrives. Only SHA-256 digests of keys are configured: keys are 256-bit random
tokens, so a fast hash is enough (no password stretching) and costs microseconds per request.
"""

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from fraudloop.errors import FraudloopError
from fraudloop.settings import ApiKey, Settings


class Permission(StrEnum):
    SCORE = "score"
    READ_DECISION = "read_decision"
    READ_AUDIT = "read_audit"
    MANAGE_MODEL = "manage_model"
    REPORT_CHARGEBACK = "report_chargeback"


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "scorer": frozenset({Permission.SCORE}),  # the payment gateway
    "chargebacks": frozenset({Permission.REPORT_CHARGEBACK}),  # the card network's disputes
    "reviewer": frozenset({Permission.READ_DECISION}),
    "senior": frozenset({Permission.READ_DECISION, Permission.READ_AUDIT}),
    "data_scientist": frozenset({Permission.READ_DECISION, Permission.READ_AUDIT}),
    "admin": frozenset(Permission),
}

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (give it to the client; configure only `hash_key(key)`)."""
    return secrets.token_urlsafe(32)


class KeyRing:
    """The configured keys, looked up by digest."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._by_digest = {k.sha256: Principal(k.name, k.role) for k in keys}

    @classmethod
    def from_settings(cls, settings: Settings) -> "KeyRing":
        keys = list(settings.api_keys)
        if settings.api_keys_file is not None:
            try:
                raw = json.loads(settings.api_keys_file.read_text())
                keys += [ApiKey.model_validate(item) for item in raw]
            except (OSError, ValueError) as exc:
                raise FraudloopError(
                    f"FRAUDLOOP_API_KEYS_FILE {settings.api_keys_file}: cannot read a JSON list "
                    f"of {{name, role, sha256}}: {exc}"
                ) from exc
        return cls(keys)

    def __len__(self) -> int:
        return len(self._by_digest)

    def identify(self, key: str) -> Principal | None:
        digest = hash_key(key)
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: 401 without a valid key, 403 when the key's role lacks `permission`.

    `async` although it never awaits: FastAPI runs a plain `def` dependency in its thread pool,
    a hop per request that cost more than the check itself."""

    async def check(request: Request, key: str | None = Depends(api_key_header)) -> Principal:
        principal = request.app.state.keys.identify(key) if key else None
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="X-API-Key header missing or not a known key",
                headers={"WWW-Authenticate": "X-API-Key"},
            )
        if permission not in ROLE_PERMISSIONS[principal.role]:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role '{principal.role}' may not {permission.value.replace('_', ' ')}",
            )
        return principal

    return check
