"""`fraudloop doctor` against a real install: Label Studio (the session's server, and a second
one started with telemetry on), a Prefect server with every deployment and a completed run, an
MLflow registry with a champion, a store with reviewers. All green first; then each item
broken on its own fails its line and the exit code, and leaves the unrelated lines green."""

import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, text
from typer.testing import CliRunner
from waiting import free_port

from cli import doctor as doctor_module
from cli.main import app
from flows import server as prefect_server
from flows.deployments import deployments, full_name
from fraudloop.policy import Route, load_policy
from fraudloop.settings import PACKAGE_DIR, get_settings
from fraudloop.storage import AuditEvent, Reviewer, make_engine, migrate, open_session
from labeling import server
from labeling.reviewers import register
from models import registry
from models.train import TrainParams, train_model
from models.training_set import build_training_frame
from simulation.world import SimulationConfig, chargeback_labels, simulate

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 1, 12)
ADMIN, PASSWORD = "reviewer@fraudloop.test", "integration-only"  # the session server's admin
NAME = "fraud-detector"
ITEMS = {
    "secrets",
    "database",
    "policy and router",
    "reviewers",
    "Label Studio",
    "Label Studio telemetry",
    "champion",
    "audit chain",
    "alert sinks",
    "schedules",
}
LINE = re.compile(r"^(ok|FAIL)\s+([^:]+):", re.MULTILINE)


@pytest.fixture(scope="module")
def install(
    tmp_path_factory: pytest.TempPathFactory, labelstudio: tuple[str, str]
) -> Iterator[dict[str, str]]:
    """A home that passes every check: the environment `fraudloop doctor` runs in."""
    home = tmp_path_factory.mktemp("doctor")
    url, token = labelstudio
    env = {
        "FRAUDLOOP_HOME": str(home),
        "FRAUDLOOP_DB_URL": f"sqlite:///{home / 'store.db'}",
        "FRAUDLOOP_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "FRAUDLOOP_POLICY_FILE": str(PACKAGE_DIR / "policy.yaml"),
        "FRAUDLOOP_LABELSTUDIO_URL": url,
        "FRAUDLOOP_LABELSTUDIO_TOKEN": token,
        "FRAUDLOOP_LABELSTUDIO_USERNAME": ADMIN,
        "FRAUDLOOP_LABELSTUDIO_PASSWORD": PASSWORD,
        "FRAUDLOOP_WEBHOOK_SECRET": "doctor-test-webhook-secret",
        "FRAUDLOOP_ALERT_SINKS": '["log"]',
        "FRAUDLOOP_PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("PREFECT_API_URL", raising=False)
        get_settings.cache_clear()
        settings = get_settings()
        _store(settings.database_url)
        _champion(settings.tracking_uri)
        try:
            assert prefect_server.start_server(settings) is not None
            _deployed_and_run(settings.prefect_api_url)
            yield env
        finally:
            prefect_server.stop(settings)
            get_settings.cache_clear()


def _store(url: str) -> None:
    migrate(url)
    with open_session(url) as s, s.begin():
        for user_id, (email, role) in enumerate(
            [("ana@x", "reviewer"), ("bo@x", "reviewer"), ("sam@x", "senior")], 1
        ):
            register(s, email, role, user_id, "admin", NOW)


def _champion(uri: str) -> None:
    world = simulate(SimulationConfig(n_customers=200, n_terminals=400, days=20, seed=3))
    frame = build_training_frame(world, chargeback_labels(world, 7), datetime(2018, 4, 21), 13)
    model = train_model(frame.X, frame.y, TrainParams(n_estimators=10))
    version = registry.log_and_register(model, frame.X, {}, {}, {"end": "2018-04-21"}, uri, NAME)
    registry.set_alias(NAME, registry.CHAMPION, version, tracking_uri=uri)


def _deployed_and_run(api_url: str) -> None:
    """Every deployment registered with its schedule, each with one completed run (what the
    runner `fraudloop up` starts would leave; no worker is needed to record a state)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        made = deployments(load_policy(PACKAGE_DIR / "policy.yaml"))
        ids = [d.apply() for d in made]
        with get_client(sync_client=True) as client:
            for deployment_id in ids:
                client.create_flow_run_from_deployment(deployment_id, state=Completed())


@pytest.fixture
def doctor(
    install: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, dict[str, bool], str]]:
    """Run `fraudloop doctor` with some settings changed: (exit code, item -> ok, output)."""

    def run(**changed: str) -> tuple[int, dict[str, bool], str]:
        for key, value in {**install, **changed}.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["doctor"])
        get_settings.cache_clear()
        lines = {name.strip(): mark == "ok" for mark, name in LINE.findall(result.output)}
        assert set(lines) == ITEMS, result.output
        return result.exit_code, lines, result.output

    return run


def _backup(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (its write-ahead log included)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _failing(lines: dict[str, bool]) -> set[str]:
    return {name for name, ok in lines.items() if not ok}


def test_a_ready_install_passes_every_item(doctor: Callable[..., tuple]) -> None:
    code, lines, output = doctor()
    assert _failing(lines) == set(), output
    assert code == 0
    assert "router checks pass" in output and "escalation matrix: Tier 1" in output


@pytest.mark.parametrize(
    ("item", "changed", "also"),
    [
        ("secrets", {"FRAUDLOOP_WEBHOOK_SECRET": "short"}, set()),
        (
            "alert sinks",
            {"FRAUDLOOP_ALERT_SINKS": f'["log", "http://127.0.0.1:{free_port()}/"]'},
            set(),
        ),
        ("champion", {"FRAUDLOOP_MLFLOW_TRACKING_URI": "sqlite:///{home}/empty-mlflow.db"}, set()),
        ("schedules", {"FRAUDLOOP_PREFECT_API_URL": ""}, set()),
        (
            "Label Studio",
            {"FRAUDLOOP_LABELSTUDIO_URL": f"http://127.0.0.1:{free_port()}"},
            {"Label Studio telemetry"},  # a server that does not answer shows no settings
        ),
        (
            "database",
            {"FRAUDLOOP_DB_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"},
            {"reviewers", "audit chain"},  # both read the store
        ),
        (
            "policy and router",
            {"FRAUDLOOP_POLICY_FILE": "{home}/bad-policy.yaml"},
            {"reviewers", "alert sinks", "schedules"},  # they read the policy
        ),
    ],
)
def test_each_broken_setting_fails_its_item(
    doctor: Callable[..., tuple],
    install: dict[str, str],
    item: str,
    changed: dict[str, str],
    also: set[str],
) -> None:
    home = install["FRAUDLOOP_HOME"]
    bad = (PACKAGE_DIR / "policy.yaml").read_text().replace("block_above: 0.95", "block_above: 2")
    Path(home, "bad-policy.yaml").write_text(bad)
    code, lines, output = doctor(**{k: v.format(home=home) for k, v in changed.items()})
    assert code == 1
    assert _failing(lines) == {item} | also, output


def test_the_not_configured_scheduler_says_how_to_fix_it(doctor: Callable[..., tuple]) -> None:
    _, _, output = doctor(FRAUDLOOP_PREFECT_API_URL="")
    assert "FAIL schedules: not configured: set PREFECT_API_URL" in output


def test_a_queue_without_its_reviewers_fails(
    doctor: Callable[..., tuple], install: dict[str, str]
) -> None:
    url = install["FRAUDLOOP_DB_URL"]
    with open_session(url) as s, s.begin():
        s.execute(delete(Reviewer).where(Reviewer.role == "senior"))
    try:
        code, lines, output = doctor()
        assert code == 1 and _failing(lines) == {"reviewers"}, output
        assert "tier2 needs 1 senior reviewer(s), has 0" in output
    finally:
        _store(url)  # the senior again (a new role event: the chain stays intact)


def test_a_tampered_audit_trail_fails(
    doctor: Callable[..., tuple], install: dict[str, str], tmp_path: Path
) -> None:
    """Edited as an attacker with the database file would (triggers dropped first)."""
    copy = tmp_path / "store.db"
    _backup(Path(install["FRAUDLOOP_DB_URL"].removeprefix("sqlite:///")), copy)
    url = f"sqlite:///{copy}"
    with make_engine(url).begin() as conn:
        triggers = conn.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
            {"t": AuditEvent.__tablename__},
        ).scalars()
        for name in list(triggers):
            conn.execute(text(f'DROP TRIGGER "{name}"'))
        conn.execute(text("UPDATE audit_events SET actor = 'someone else' WHERE seq = 1"))
    code, lines, output = doctor(FRAUDLOOP_DB_URL=url)
    assert code == 1 and _failing(lines) == {"audit chain"}, output


def test_a_paused_deployment_fails_the_schedules(
    doctor: Callable[..., tuple], install: dict[str, str]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = install["FRAUDLOOP_PREFECT_API_URL"]
    made = deployments(load_policy(PACKAGE_DIR / "policy.yaml"))
    name = full_name("evaluate-alerts", made)
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        deployment = c.read_deployment_by_name(name)
        c.pause_deployment(deployment.id)
        try:
            code, lines, output = doctor()
        finally:
            c.resume_deployment(deployment.id)
    assert code == 1 and _failing(lines) == {"schedules"}, output
    assert f"{name} has no active schedule" in output


def test_label_studio_with_telemetry_on_fails(
    doctor: Callable[..., tuple],
    labelstudio: tuple[str, str],
    labelstudio_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second server from a copy of the session server's data, started as someone might
    without fraudloop's privacy settings (analytics on)."""
    data = tmp_path / "ls-telemetry"
    data.mkdir()
    if (labelstudio_dir / ".env").exists():  # its secret key
        shutil.copy(labelstudio_dir / ".env", data / ".env")
    _backup(labelstudio_dir / "label_studio.sqlite3", data / "label_studio.sqlite3")
    private = server.server_env

    def careless(*args: object) -> dict[str, str]:
        return {**private(*args), "COLLECT_ANALYTICS": "true"}  # type: ignore[arg-type]

    monkeypatch.setattr(server, "server_env", careless)
    port = free_port()
    venv = get_settings().labelstudio_venv
    server.start(
        venv if venv.is_absolute() else Path(__file__).resolve().parents[2] / venv,
        data,
        host="127.0.0.1",
        port=port,
        username=ADMIN,
        password=PASSWORD,
        token=labelstudio[1],
    )
    try:
        code, lines, output = doctor(FRAUDLOOP_LABELSTUDIO_URL=f"http://127.0.0.1:{port}")
    finally:
        assert server.stop(data)
    assert code == 1 and _failing(lines) == {"Label Studio telemetry"}, output
    assert "COLLECT_ANALYTICS='True'" in output


def test_a_router_that_regresses_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The router's checks are real: a router that lets a block through fails them."""
    policy = load_policy(PACKAGE_DIR / "policy.yaml")
    assert doctor_module.router_problems(policy) == []
    original = doctor_module.route

    def lenient(score: float, confidence: float, p: object) -> Route:
        got = original(score, confidence, p)  # type: ignore[arg-type]
        return Route.AUTO_ALLOW if got == Route.AUTO_BLOCK and score > 0.99 else got  # noqa: PLR2004

    monkeypatch.setattr(doctor_module, "route", lenient)
    problems = doctor_module.router_problems(policy)
    assert problems and any("table" in p for p in problems)
