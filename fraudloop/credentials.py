"""Per-install secrets: made at the first `fraudloop up`, kept in the state dir for its owner only.

The Label Studio API token and admin password and the webhook secret have no defaults: a value
shipped in code is known to everyone, and a forged webhook with it decides cases in a real
reviewer's name. An environment variable (`FRAUDLOOP_LABELSTUDIO_TOKEN`, ...) wins over the file.
"""

import json
import os
import secrets
import stat
from pathlib import Path

from fraudloop.errors import FraudloopError

FILE_NAME = "credentials.json"
FIELDS = ("labelstudio_token", "labelstudio_password", "webhook_secret")
# values earlier versions shipped as defaults: refused wherever they turn up
KNOWN_DEFAULTS = frozenset(
    {
        "f7a1c0de5eed0a11ce0ffee0fab1ed0c0ffee123",
        "fraudloop-admin",
        "change-me-webhook-secret",
        "change-me",
        "changeme",
        "secret",
        "password",
    }
)
MIN_SECRET_LENGTH = 16


def path(home: Path) -> Path:
    return home / FILE_NAME


def generate() -> dict[str, str]:
    return {
        "labelstudio_token": secrets.token_hex(20),  # Label Studio takes 40 hex characters
        "labelstudio_password": secrets.token_urlsafe(18),
        "webhook_secret": secrets.token_urlsafe(32),
    }


def ensure(home: Path) -> tuple[Path, bool]:
    """The credentials file, created owner-only (0600) if missing; True when made now."""
    target = path(home)
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        read(home)  # an existing file must be sound and private
        return target, False
    with os.fdopen(fd, "w") as out:
        json.dump(generate(), out, indent=2)
    return target, True


def read(home: Path) -> dict[str, str]:
    """What the file holds ({} if there is none); refuses a file others may read."""
    target = path(home)
    if not target.exists():
        return {}
    mode = stat.S_IMODE(target.stat().st_mode)
    if mode & 0o077:
        raise FraudloopError(
            f"{target} is readable by others (mode {mode:o}); `chmod 600 {target}`"
        )
    try:
        values = json.loads(target.read_text())
    except json.JSONDecodeError as exc:
        raise FraudloopError(
            f"{target} is not valid JSON ({exc}); delete it and run `fraudloop up`"
        ) from exc
    return {k: str(v) for k, v in values.items() if k in FIELDS}


def problem(name: str, value: str) -> str | None:
    """Why a secret cannot be trusted (empty, a published default, too short), or None."""
    env = f"FRAUDLOOP_{name.upper()}"
    if not value.strip():
        return f"{env} is not set"
    if value in KNOWN_DEFAULTS:
        return f"{env} is a published default"
    if len(value) < MIN_SECRET_LENGTH:
        return f"{env} is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def problems(values: dict[str, str]) -> list[str]:
    """Every secret that cannot be trusted, by its variable's name."""
    found = (problem(name, values.get(name) or "") for name in FIELDS)
    return [p for p in found if p is not None]


def require(values: dict[str, str], home: Path) -> None:
    """Refuse to run with a missing or default secret, saying how to get per-install ones."""
    found = problems(values)
    if found:
        raise FraudloopError(
            "refusing default or missing secrets: "
            + "; ".join(found)
            + f". Run `fraudloop up` to generate per-install credentials in {path(home)}, "
            "or set the variables."
        )
