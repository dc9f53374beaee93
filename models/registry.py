"""MLflow registry: log a trained model, move the `champion` / `challenger` aliases.

Every function takes the tracking URI from its caller (nothing is configured at import), and
every function that moves an alias returns what it actually did.
"""

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from models.config import ModelConfig
from models.explain import MODEL_ARTIFACT, TEXTS_FILE, predict_frame
from models.features import DEFAULT_CONFIG, feature_texts
from models.train import FraudModel

CHAMPION = "champion"
CHALLENGER = "challenger"
PYFUNC_FILE = Path(__file__).with_name("pyfunc.py")
RUNTIME_PACKAGES = ("mlflow", "xgboost", "pandas", "numpy", "scikit-learn")
MODEL_CONFIG_ARTIFACT = "model_config.yaml"
HISTORY_TAG = "champion_history"  # registered-model tag: the champions in order, JSON list


@dataclass(frozen=True)
class PromotionResult:
    """The outcome of a promotion decision, as the registry holds it afterwards."""

    promoted: bool
    champion_version: int | None
    previous_champion: int | None
    challenger_version: int
    challenger_metric: float
    champion_metric: float | None
    reason: str


def _client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def default_artifact_root(tracking_uri: str) -> Path | None:
    """`mlartifacts/` beside a SQLite tracking database (Settings uses the same layout); None
    for a tracking server, which stores artifacts where it is configured to."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"


def _experiment_id(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root is not None else None
    return client.create_experiment(name, artifact_location=location)


def log_and_register(
    model: FraudModel,
    features_sample: pd.DataFrame,
    metrics: dict[str, float],
    params: Mapping[str, object],
    data_window: dict[str, str],
    tracking_uri: str,
    model_name: str,
    *,
    artifact_root: Path | None = None,
    experiment: str = "fraudloop",
    config: ModelConfig | None = None,
    tags: Mapping[str, str] | None = None,
) -> int:
    """One MLflow run with params, metrics, data window, feature list and (given) the model
    config it was trained with, as `model_config.yaml`; returns the version. `tags` (lineage:
    `models.challenger.lineage_tags`) go on the run and on the version, beside the window's."""
    client = _client(tracking_uri)
    experiment_id = _experiment_id(
        client, experiment, artifact_root or default_artifact_root(tracking_uri)
    )
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    texts = feature_texts(config.features if config else DEFAULT_CONFIG)
    example = features_sample[model.features].head(5)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=experiment_id):
        directory = Path(tmp) / MODEL_ARTIFACT
        model.save(directory)
        (directory / TEXTS_FILE).write_text(json.dumps(texts))
        mlflow.log_params(dict(params))
        mlflow.log_metrics(metrics)
        mlflow.log_dict(data_window, "data_window.json")
        mlflow.log_dict({"features": model.features}, "features.json")
        if config is not None:
            mlflow.log_dict(config.model_dump(mode="json"), MODEL_CONFIG_ARTIFACT)
        version_tags = {**{f"data_window.{k}": v for k, v in data_window.items()}, **(tags or {})}
        mlflow.set_tags(version_tags)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={MODEL_ARTIFACT: str(directory)},
            signature=infer_signature(example, predict_frame(model, example, texts)),
            input_example=example,
            pip_requirements=[f"{p}=={installed_version(p)}" for p in RUNTIME_PACKAGES],
            registered_model_name=model_name,
        )
    version = int(info.registered_model_version)
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, str(version), key, value)
    return version


def set_alias(name: str, alias: str, version: int, *, tracking_uri: str) -> None:
    _client(tracking_uri).set_registered_model_alias(name, alias, str(version))


def alias_version(name: str, alias: str, *, tracking_uri: str) -> int | None:
    """The version an alias points to, or None if the model or the alias does not exist."""
    client = _client(tracking_uri)
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def champion_version(name: str, *, tracking_uri: str) -> int | None:
    return alias_version(name, CHAMPION, tracking_uri=tracking_uri)


def champion_history(name: str, *, tracking_uri: str) -> list[int]:
    """The versions that held `champion`, oldest first, as the registry recorded each move; a
    champion set before the history was kept (or by hand in MLflow) is its last entry."""
    client = _client(tracking_uri)
    try:
        recorded = client.get_registered_model(name).tags.get(HISTORY_TAG)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    history = [int(v) for v in json.loads(recorded)] if recorded else []
    current = champion_version(name, tracking_uri=tracking_uri)
    if current is not None and history[-1:] != [current]:
        history.append(current)
    return history


def set_champion(name: str, version: int, history: list[int], *, tracking_uri: str) -> None:
    """Move `champion` to `version` and keep `history` (ending with it), so a rollback knows the
    champion before it."""
    client = _client(tracking_uri)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def wins(challenger: float, champion: float | None, min_gain: float) -> tuple[bool, str]:
    """The promotion rule, and why: a challenger wins when there is no champion, or when it
    beats the champion's metric on the same holdout by more than `min_gain` (higher is better).
    The registry and the replay benchmark decide with this one function."""
    if champion is None:
        return True, "no champion yet"
    if challenger > champion + min_gain:
        return True, f"{challenger:.4f} > {champion:.4f} + {min_gain}"
    return False, f"{challenger:.4f} <= {champion:.4f} + {min_gain}"


def promote_if_better(
    name: str,
    challenger_version: int,
    challenger_metric: float,
    champion_metric: float | None,
    min_gain: float,
    *,
    tracking_uri: str,
) -> PromotionResult:
    """Move `champion` to the challenger only if it beats the champion by more than `min_gain`.

    Both metrics must come from the same time-ordered holdout (higher is better). Without a
    champion the challenger is promoted. The challenger keeps the `challenger` alias when it
    loses; after a promotion no `challenger` alias is left.
    """
    current = champion_version(name, tracking_uri=tracking_uri)
    if current is not None and current != challenger_version and champion_metric is None:
        raise ValueError(f"champion v{current} of '{name}' exists: pass its holdout metric")
    if current == challenger_version:
        promote, reason = False, f"v{challenger_version} is already the champion"
    else:
        promote, reason = wins(
            challenger_metric, None if current is None else champion_metric, min_gain
        )
    client = _client(tracking_uri)
    if promote:
        history = [*champion_history(name, tracking_uri=tracking_uri), challenger_version]
        set_champion(name, challenger_version, history, tracking_uri=tracking_uri)
        if alias_version(name, CHALLENGER, tracking_uri=tracking_uri) is not None:
            client.delete_registered_model_alias(name, CHALLENGER)
    elif current != challenger_version:
        client.set_registered_model_alias(name, CHALLENGER, str(challenger_version))
    return PromotionResult(
        promoted=promote,
        champion_version=challenger_version if promote else current,
        previous_champion=current,
        challenger_version=challenger_version,
        challenger_metric=challenger_metric,
        champion_metric=champion_metric,
        reason=reason,
    )


def registry_summary(name: str, *, tracking_uri: str) -> dict[str, int | str | None]:
    """Versions registered, versions that ever became champion (audited), current champion."""
    client = _client(tracking_uri)
    try:
        versions = list(client.search_model_versions(f"name='{name}'"))
    except MlflowException:
        versions = []
    champion = champion_version(name, tracking_uri=tracking_uri) if versions else None
    return {
        "models_trained": len(versions),
        "champion": f"{name} v{champion}" if champion is not None else None,
    }
