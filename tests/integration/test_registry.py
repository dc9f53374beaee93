"""A real MLflow registry on SQLite: log, register, aliases, promotion, load and predict."""

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from fraudloop.errors import FraudloopError
from models import registry
from models.challenger import fit_challenger, run_record
from models.config import packaged_model_config
from models.scoring import load_model
from models.train import FraudModel, TrainParams, train_model
from models.training_set import TrainingFrame, build_training_frame
from simulation.world import SimulationConfig, chargeback_labels, simulate

pytestmark = pytest.mark.integration
NAME = "fraud-detector"
AS_OF = datetime(2018, 4, 25)


@pytest.fixture(autouse=True)
def _quiet_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    return simulate(SimulationConfig(n_customers=300, n_terminals=600, days=24, seed=9))


@pytest.fixture(scope="module")
def trained(world: pd.DataFrame) -> Iterator[tuple[FraudModel, TrainingFrame]]:
    frame = build_training_frame(world, chargeback_labels(world, 7), AS_OF, 17)
    yield train_model(frame.X, frame.y, TrainParams(n_estimators=15)), frame


def test_register_promote_and_score(
    trained: tuple[FraudModel, TrainingFrame], tmp_path: Path
) -> None:
    model, frame = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def log(ap: float) -> int:
        return registry.log_and_register(
            model,
            frame.X,
            metrics={"average_precision": ap},
            params={"n_estimators": 15},
            data_window={"start": "2018-04-08", "end": "2018-04-25"},
            tracking_uri=uri,
            model_name=NAME,
        )

    with pytest.raises(FraudloopError, match="champion"):
        load_model(uri, NAME)
    assert registry.champion_version(NAME, tracking_uri=uri) is None

    first = log(0.50)
    result = registry.promote_if_better(NAME, first, 0.50, None, 0.0, tracking_uri=uri)
    assert (result.promoted, result.champion_version) == (True, first)
    assert (tmp_path / "mlartifacts").is_dir()

    weaker = log(0.40)
    result = registry.promote_if_better(NAME, weaker, 0.40, 0.50, 0.0, tracking_uri=uri)
    assert not result.promoted
    assert registry.champion_version(NAME, tracking_uri=uri) == first
    assert registry.alias_version(NAME, registry.CHALLENGER, tracking_uri=uri) == weaker

    stronger = log(0.60)
    with pytest.raises(ValueError, match="holdout metric"):
        registry.promote_if_better(NAME, stronger, 0.60, None, 0.0, tracking_uri=uri)
    result = registry.promote_if_better(NAME, stronger, 0.60, 0.50, 0.05, tracking_uri=uri)
    assert result.promoted and result.previous_champion == first
    assert registry.champion_version(NAME, tracking_uri=uri) == stronger
    assert registry.alias_version(NAME, registry.CHALLENGER, tracking_uri=uri) is None

    scoring = load_model(uri, NAME)
    assert (scoring.name, scoring.version, scoring.alias) == (NAME, stronger, "champion")
    out = scoring.predict(frame.X.tail(4))
    assert list(out.columns) == ["score", "confidence", "reasons"]
    assert out.index.equals(frame.X.tail(4).index)
    assert out["score"].between(0, 1).all()
    assert (out["confidence"] >= 0.5).all()
    assert all(len(r) == 3 and isinstance(r[0]["text"], str) for r in out["reasons"])
    assert out["score"].tolist() == pytest.approx(model.predict_proba(frame.X.tail(4)).tolist())
    # the score alone (monitoring's path, no TreeSHAP) is the same score
    assert scoring.score(frame.X.tail(4)).tolist() == pytest.approx(out["score"].tolist())
    # a loaded booster predicts on the thread count it was fitted with, not on every core
    booster = scoring.pyfunc.unwrap_python_model().model.booster
    threads = json.loads(booster.save_config())["learner"]["generic_param"]["nthread"]
    assert int(threads) == TrainParams().nthread


def test_a_run_logs_the_model_config_it_was_trained_with(
    world: pd.DataFrame, tmp_path: Path
) -> None:
    """Params and artifact of the run say which windows and hyperparameters made the model."""
    packaged = packaged_model_config()
    config = packaged.with_delay(5).model_copy(
        update={"training": replace(packaged.training, n_estimators=15)}
    )
    challenger = fit_challenger(world, chargeback_labels(world, 5), AS_OF, 17, 3, config)
    run = run_record(challenger, AS_OF, 17, 3, "test-policy")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = registry.log_and_register(
        challenger.model,
        challenger.split.train.X,
        run.metrics,
        run.params,
        run.window,
        uri,
        NAME,
        config=challenger.config,
    )

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = str(client.get_model_version(NAME, str(version)).run_id)
    params = client.get_run(run_id).data.params
    assert params["model_config"] == config.version
    assert params["policy"] == "test-policy"
    assert params["training.n_estimators"] == "15"
    assert params["features.delay_days"] == "5"
    assert params["features.windows"] == ",".join(map(str, config.features.windows))
    for name, value in asdict(config.training).items():
        assert params[f"training.{name}"] == (
            ",".join(value) if isinstance(value, tuple) else str(value)
        )
    assert {f"features.{name}" for name in asdict(config.features)} <= params.keys()
    logged = client.download_artifacts(run_id, registry.MODEL_CONFIG_ARTIFACT, str(tmp_path))
    assert yaml.safe_load(Path(logged).read_text()) == config.model_dump(mode="json")


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """A real MLflow tracking server (SQLite behind it, artifacts it serves itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = tmp_path / "server"
    store.mkdir()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # a cold start migrates its database
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == httpx.codes.OK:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_tracking_server_keeps_the_artifacts_where_it_is_configured(
    trained: tuple[FraudModel, TrainingFrame], tracking_server: str, tmp_path: Path
) -> None:
    """Registering against a tracking server once failed: fraudloop insisted on a local
    artifact root beside a SQLite file."""
    model, frame = trained
    version = registry.log_and_register(
        model, frame.X, {}, {}, {"end": "2018-04-25"}, tracking_server, NAME
    )
    registry.set_alias(NAME, registry.CHAMPION, version, tracking_uri=tracking_server)
    served = load_model(tracking_server, NAME)
    assert served.version == version
    assert (tmp_path / "server" / "artifacts").is_dir()
    assert not (tmp_path / "mlartifacts").exists()
