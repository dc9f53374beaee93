"""The server profile's wiring without its servers: what the settings point at, Label Studio's
PostgreSQL settings, and deployments a worker can import."""

import importlib
from pathlib import Path

import pytest

from flows.profile import SCORE_BATCH, profile_deployments
from fraudloop.policy import load_policy
from fraudloop.settings import Settings
from labeling.server import postgres_env, server_env


def test_the_server_profile_points_what_is_unset_at_its_servers() -> None:
    s = Settings(profile="server", server_database_prefix="team")
    assert s.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/team_store"
    assert s.tracking_uri == "http://127.0.0.1:5000"
    assert s.prefect_database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/team_prefect"
    assert s.server_database("labelstudio").endswith("/team_labelstudio")


def test_what_is_set_wins_and_the_embedded_profile_is_unchanged() -> None:
    mine = Settings(profile="server", db_url="sqlite:///elsewhere.db", mlflow_tracking_uri="x")
    assert (mine.database_url, mine.tracking_uri) == ("sqlite:///elsewhere.db", "x")
    embedded = Settings()
    assert embedded.database_url.startswith("sqlite:///")
    assert embedded.prefect_database_url is None


@pytest.mark.parametrize("prefix", ["Team", "1team", "team-a", "x" * 42])
def test_a_database_prefix_must_be_a_plain_lowercase_name(prefix: str) -> None:
    with pytest.raises(ValueError, match="server_database_prefix"):
        Settings(server_database_prefix=prefix)


def test_label_studio_on_postgresql_gets_its_own_settings() -> None:
    url = "postgresql+psycopg://lab:secret@db.internal:6543/team_labelstudio"
    assert postgres_env(url) == {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": "team_labelstudio",
        "POSTGRE_USER": "lab",
        "POSTGRE_PASSWORD": "secret",
        "POSTGRE_HOST": "db.internal",
        "POSTGRE_PORT": "6543",
    }
    env = server_env(Path("/tmp/ls"), "a@b.c", "pw", "t" * 40, url)
    assert env["DJANGO_DB"] == "default" and env["SENTRY_DSN"] == ""
    assert "DJANGO_DB" not in server_env(Path("/tmp/ls"), "a", "b", "c")


def test_every_deployment_loads_by_module_path_as_a_worker_loads_it() -> None:
    made = profile_deployments(load_policy(Settings().policy_file))
    assert SCORE_BATCH in {d.name for d in made}
    for d in made:
        assert d.entrypoint is not None and ":" not in d.entrypoint
        module, name = d.entrypoint.rsplit(".", 1)
        assert getattr(importlib.import_module(module), name).name == d.flow_name
