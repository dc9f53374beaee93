"""`fraudloop doctor`: what an operator checks first, each check one line with what to do."""

from collections.abc import Callable

from fraudloop import credentials
from fraudloop.errors import FraudloopError
from fraudloop.settings import Settings

Check = tuple[str, bool, str]


def checks(settings: Settings) -> list[Check]:
    return [
        _check("secrets", lambda: _secrets(settings)),
        _check("database", lambda: _database(settings)),
        _check("Label Studio", lambda: _labelstudio(settings)),
        _check("model registry", lambda: _registry(settings)),
    ]


def _check(name: str, probe: Callable[[], str]) -> Check:
    try:
        return name, True, probe()
    except FraudloopError as exc:
        return name, False, str(exc)
    except Exception as exc:  # a check that crashes is a failed check, not a traceback
        return name, False, f"{type(exc).__name__}: {exc}"


def _secrets(settings: Settings) -> str:
    settings.require_secrets()
    return f"per-install ({credentials.path(settings.home)} or environment)"


def _database(settings: Settings) -> str:
    from sqlalchemy import text

    from fraudloop.storage import make_engine

    with make_engine(settings.database_url).connect() as connection:
        connection.execute(text("SELECT 1"))
    return settings.database_url.split("@")[-1]


def _labelstudio(settings: Settings) -> str:
    from labeling import server

    if not server.is_up(settings.labelstudio_url):
        raise FraudloopError(
            f"{settings.labelstudio_url} does not answer; `fraudloop up` starts it"
        )
    return f"{settings.labelstudio_url}, token logs in as {server.check_token(settings.labelstudio_url, settings.labelstudio_token)}"


def _registry(settings: Settings) -> str:
    from models.registry import CHAMPION, alias_version

    version = alias_version(settings.model_name, CHAMPION, tracking_uri=settings.tracking_uri)
    if version is None:
        raise FraudloopError(f"no '{CHAMPION}' version of {settings.model_name}; `fraudloop train`")
    return f"{settings.model_name} v{version} is the champion"
