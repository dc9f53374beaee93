"""The MLflow model, logged as code (models-from-code): probability, confidence and reasons.

MLflow's built-in xgboost flavour returns class labels, so this wrapper is what gets
registered. MLflow executes this file when loading the model; `set_model` tells it which
object serves. The `models` package must be importable where the model is loaded.
"""

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from models.explain import MODEL_ARTIFACT, TEXTS_FILE, predict_frame
from models.train import FraudModel


class FraudPyfunc(PythonModel):
    """predict(FEATURE_COLUMNS) -> score, confidence, reasons (JSON list of 3 dicts)."""

    def load_context(self, context: PythonModelContext) -> None:
        directory = Path(context.artifacts[MODEL_ARTIFACT])
        self.model = FraudModel.load(directory)
        self.texts = json.loads((directory / TEXTS_FILE).read_text())

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        return predict_frame(self.model, model_input, self.texts)


mlflow.models.set_model(FraudPyfunc())
