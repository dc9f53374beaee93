"""Per-install secrets: generated once, owner-only, never a published default."""

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from fraudloop import credentials
from fraudloop.errors import FraudloopError
from fraudloop.settings import Settings, get_settings


def test_first_use_generates_private_credentials_once(tmp_path: Path) -> None:
    target, made = credentials.ensure(tmp_path)
    assert made and stat.S_IMODE(target.stat().st_mode) == 0o600
    first = json.loads(target.read_text())
    assert set(first) == set(credentials.FIELDS)
    assert len(first["labelstudio_token"]) == 40 and int(first["labelstudio_token"], 16) >= 0
    assert credentials.problems(first) == []
    assert credentials.ensure(tmp_path) == (target, False)
    assert json.loads(target.read_text()) == first  # never regenerated behind the user's back
    other, _ = credentials.ensure(tmp_path / "other")
    assert json.loads(other.read_text()) != first  # per install


def test_settings_take_the_file_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, _ = credentials.ensure(tmp_path)
    stored = json.loads(target.read_text())
    settings = Settings(home=tmp_path)
    assert settings.secrets() == stored
    monkeypatch.setenv("FRAUDLOOP_WEBHOOK_SECRET", "from-the-environment-0123456789")
    assert Settings(home=tmp_path).webhook_secret == "from-the-environment-0123456789"


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    target, _ = credentials.ensure(tmp_path)
    target.chmod(0o644)
    with pytest.raises(FraudloopError, match="chmod 600"):
        Settings(home=tmp_path)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is not set"),
        ("   ", "is not set"),
        ("change-me-webhook-secret", "published default"),
        ("f7a1c0de5eed0a11ce0ffee0fab1ed0c0ffee123", "published default"),
        ("short", "shorter than"),
    ],
)
def test_untrustworthy_secrets_are_named(value: str, problem: str) -> None:
    found = credentials.problem("webhook_secret", value)
    assert found is not None and problem in found and "FRAUDLOOP_WEBHOOK_SECRET" in found


def test_serve_and_doctor_refuse_default_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUDLOOP_WEBHOOK_SECRET", "change-me-webhook-secret")
    get_settings.cache_clear()
    try:
        served = CliRunner().invoke(app, ["serve"])
        assert served.exit_code == 2
        assert "published default" in served.output and "fraudloop up" in served.output
        doctor = CliRunner().invoke(app, ["doctor"])
        assert doctor.exit_code == 1
        assert "FAIL secrets" in doctor.output
    finally:
        get_settings.cache_clear()
