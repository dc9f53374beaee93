"""The model a Dask worker scores with: the very version the run started with, loaded once per
worker process.

A loaded model does not travel: MLflow loads a models-from-code pyfunc as a module of a
generated name that exists only in the process that loaded it. So workers are sent where the
version is (`ModelRef`) and load it themselves; by version, not by alias, so that an alias moved
during the run changes nothing in it.
"""

from dataclasses import dataclass
from functools import cache

from mlflow.pyfunc import load_model as load_pyfunc
from mlflow.tracking import MlflowClient

from fraudloop.process import tune_for_scoring
from models.scoring import ScoringModel


@dataclass(frozen=True)
class ModelRef:
    tracking_uri: str
    name: str
    version: int
    alias: str

    @classmethod
    def of(cls, model: ScoringModel, tracking_uri: str) -> "ModelRef":
        return cls(tracking_uri, model.name, model.version, model.alias)


@cache
def loaded(ref: ModelRef) -> ScoringModel:
    """`ref`'s version, loaded on first use in this process, which is then tuned for scoring
    as the flow's own process is (`flows.champion.champion`)."""
    client = MlflowClient(tracking_uri=ref.tracking_uri, registry_uri=ref.tracking_uri)
    pyfunc = load_pyfunc(client.get_model_version_download_uri(ref.name, str(ref.version)))
    model = ScoringModel(
        name=ref.name,
        version=ref.version,
        alias=ref.alias,
        features=pyfunc.metadata.get_input_schema().input_names(),
        pyfunc=pyfunc,
    )
    tune_for_scoring()
    return model
