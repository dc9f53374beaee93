"""The model config (`model.yaml`, versioned): feature windows and training parameters.

One file, so a run's settings are read in one place and every MLflow run can log them all. The
chargeback delay stays the policy's (`with_delay`): the policy decides when a label is known.
"""

from dataclasses import replace
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fraudloop.yaml_config import load_yaml
from models.features import FeatureConfig, feature_columns
from models.train import TrainParams

MODEL_CONFIG = Path(__file__).with_name("model.yaml")


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    features: FeatureConfig
    training: TrainParams

    @field_validator("features", mode="before")
    @classmethod
    def _no_delay(cls, value: object) -> object:
        """Two places for the delay would disagree: the file must not hold it."""
        if isinstance(value, dict) and "delay_days" in value:
            raise ValueError(
                "delay_days is the policy's (learning.chargeback_delay_days), remove it here"
            )
        return value

    @model_validator(mode="after")
    def _constrained_features_exist(self) -> "ModelConfig":
        """A misspelt feature would silently lose its constraint."""
        unknown = set(self.training.monotone_increasing) - set(feature_columns(self.features))
        if unknown:
            raise ValueError(f"training.monotone_increasing: no feature {sorted(unknown)}")
        return self

    def with_delay(self, days: int) -> "ModelConfig":
        """This config with the policy's chargeback delay: the features as trained and served."""
        return self.model_copy(update={"features": replace(self.features, delay_days=days)})

    def as_params(self) -> dict[str, str]:
        """Flat MLflow params: `model_config` (the version), `features.<field>` and
        `training.<field>`; MLflow params are text, so a list is comma-joined."""
        dumped = self.model_dump(mode="json")
        params = {"model_config": self.version}
        for section in ("features", "training"):
            params |= {f"{section}.{k}": _param_text(v) for k, v in dumped[section].items()}
        return params


def _param_text(value: object) -> str:
    """`[1, 7]` -> "1,7"; a list of pairs `[[0, 14], [28, 35]]` -> "0-14,28-35"."""
    if not isinstance(value, list):
        return str(value)
    return ",".join("-".join(map(str, v)) if isinstance(v, list) else str(v) for v in value)


def load_model_config(path: Path) -> ModelConfig:
    """Read and validate a model config file; errors name the field and the problem."""
    return load_yaml(path, ModelConfig, "model config")


@cache
def packaged_model_config() -> ModelConfig:
    """`model.yaml` of this package, read once per process (scoring asks for it per batch)."""
    return load_model_config(MODEL_CONFIG)
