"""The only way labeling, monitoring and flows use the model: load by alias, predict."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from mlflow.pyfunc import load_model as load_model_from
from mlflow.tracking import MlflowClient

from fraudloop.errors import FraudloopError, ServiceUnavailable
from fraudloop.settings import Settings
from models.explain import confidence, explain

CHAMPION = "champion"


@dataclass(frozen=True)
class ScoringModel:
    """A registered model version, with the name/version/alias recorded on every decision."""

    name: str
    version: int
    alias: str
    features: list[str]
    pyfunc: PyFuncModel

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """score (calibrated probability), confidence, reasons (list of 3 dicts), per row.

        Calls the registered python model's parts directly, as the pyfunc's `predict` does but
        without its JSON reasons: MLflow's per-call input-schema enforcement and the frames and
        JSON round trip around it cost more than the model on a one-row online request, and
        fraudloop builds these features itself, in the signature's columns.
        """
        python_model = self.pyfunc.unwrap_python_model()
        score, reasons = explain(python_model.model, features, python_model.texts)
        return pd.DataFrame(
            {"score": score, "confidence": confidence(score), "reasons": reasons},
            index=features.index,
        )

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """The calibrated score alone: for monitoring, which reads millions of rows and no
        reasons (TreeSHAP costs several times the prediction)."""
        return np.asarray(self.pyfunc.unwrap_python_model().model.predict_proba(features))


def load_model(tracking_uri: str, name: str, alias: str = CHAMPION) -> ScoringModel:
    """The version behind `alias`, loaded from its artifact location (no global MLflow state)."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise FraudloopError(
                f"MLflow registry at {tracking_uri}: model '{name}' has no version with alias "
                f"'{alias}'. Train and promote a model first (fraudloop train)."
            ) from exc
        raise ServiceUnavailable(
            f"MLflow registry at {tracking_uri} is unavailable ({exc.message[:200]}); "
            "check FRAUDLOOP_MLFLOW_TRACKING_URI and that the server is up"
        ) from exc
    uri = client.get_model_version_download_uri(name, version.version)
    pyfunc = load_model_from(uri)
    return ScoringModel(
        name=name,
        version=int(version.version),
        alias=alias,
        features=pyfunc.metadata.get_input_schema().input_names(),
        pyfunc=pyfunc,
    )


def load_champion(settings: Settings) -> ScoringModel:
    return load_model(settings.tracking_uri, settings.model_name, CHAMPION)
