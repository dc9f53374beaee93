"""The MLflow experiment a run goes to, made on first use: one place for the rule that a SQLite
tracking store keeps a new experiment's files under the install's artifact root, and a tracking
server where it is configured to (`artifact_root` None)."""

from pathlib import Path


def experiment_id(tracking_uri: str, name: str, artifact_root: Path | None) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = artifact_root.resolve().as_uri() if artifact_root else None
    return str(client.create_experiment(name, artifact_location=location))
