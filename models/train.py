"""Fit the fraud model: XGBoost on the earlier part of a window, calibration on the later part.

The router's thresholds are probabilities, so the raw margin is mapped through a calibration
fitted only on the most recent slice of the window (rows the booster never saw), which also
mimics how the model meets tomorrow's data. The map is a logistic curve (Platt scaling):
strictly increasing, so it keeps the booster's ranking. An isotonic map's flat steps tie
scores and cost average precision on the handbook protocol, for a Brier score no better than
the logistic curve's (`benchmarks/RESULTS.md`).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import xgboost as xgb
from pydantic import ConfigDict, Field
from sklearn.linear_model import LogisticRegression

BOOSTER_FILE = "booster.ubj"
CALIBRATION_FILE = "calibration.json"

# strict: a model config's `1.5` or `true` is an error, never a count (`models.config`)
Count = Annotated[int, Field(strict=True, gt=0)]
Share = Annotated[float, Field(strict=True, gt=0, le=1)]


@dataclass(frozen=True)
class TrainParams:
    """Model hyperparameters, chosen by mean AP on the handbook's prequential folds (see
    benchmarks/RESULTS.md): 100 trees and column sampling beat 300 trees, and monotone
    constraints beyond the amount cost AP; the amount one is kept because a bigger amount must
    never lower the score. The served values are `models/model.yaml`'s (`models.config`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # a misspelt key in model.yaml is an error

    n_estimators: Count = 100
    max_depth: Count = 4
    learning_rate: Share = 0.05
    min_child_weight: Annotated[float, Field(strict=True, ge=0)] = 1.0
    subsample: Share = 1.0
    colsample_bytree: Share = 0.6
    # both the fit and the calibration slice need rows
    calibration_share: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.2
    # legit rows the booster fits on at most (every fraud is kept; beyond the cap a seeded
    # sample): fit time grows with rows, a 7-day window stays under the cap, and the
    # calibration slice, never subsampled, maps the margin back to probabilities
    max_legit_rows: Count = 100_000
    # one thread: on a shared small machine OpenMP's spinning threads make 2 threads slower
    # than 1 whenever other processes keep a core busy
    nthread: Count = 1
    seed: Annotated[int, Field(strict=True, ge=0)] = 7
    monotone_increasing: tuple[str, ...] = ("tx_amount",)

    def booster_params(self, features: list[str]) -> dict[str, object]:
        constraints = tuple(int(f in self.monotone_increasing) for f in features)
        return {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "nthread": self.nthread,
            "seed": self.seed,
            "monotone_constraints": "(" + ",".join(map(str, constraints)) + ")",
        }


PREDICT_THREADS = TrainParams().nthread  # predict on the thread count the default fit uses


@dataclass
class FraudModel:
    """Booster plus calibration: score = 1 / (1 + exp(-(slope * margin + intercept)))."""

    booster: xgb.Booster
    slope: float
    intercept: float
    features: list[str] = field(default_factory=list)

    def values(self, X: pd.DataFrame) -> np.ndarray:
        """The model's features as a float matrix, in its column order."""
        ordered = list(X.columns) == self.features  # skips a frame copy per call when serving
        return X.to_numpy(float) if ordered else X[self.features].to_numpy(float)

    def _matrix(self, values: np.ndarray) -> xgb.DMatrix:
        """On the booster's thread count too (see `load`): on every core, a one-row matrix cost
        several times the CPU while another process kept the other core busy."""
        return xgb.DMatrix(values, feature_names=self.features, nthread=PREDICT_THREADS)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self._matrix(self.values(X)), output_margin=True)

    def calibrate(self, margin: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * margin + self.intercept)))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated fraud probability per row."""
        return self.calibrate(self.margin(X))

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP in log-odds: one column per feature, then the bias column."""
        return self.booster.predict(self._matrix(self.values(X)), pred_contribs=True)

    def score_and_contributions(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`predict_proba` and `contributions` of `values` (see `values`) from one matrix:
        serving does both per call."""
        matrix = self._matrix(values)
        margin = self.booster.predict(matrix, output_margin=True)
        return self.calibrate(margin), self.booster.predict(matrix, pred_contribs=True)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(directory / BOOSTER_FILE)
        table = {"features": self.features, "slope": self.slope, "intercept": self.intercept}
        (directory / CALIBRATION_FILE).write_text(json.dumps(table))

    @classmethod
    def load(cls, directory: Path) -> "FraudModel":
        booster = xgb.Booster()
        booster.load_model(directory / BOOSTER_FILE)
        # a saved booster forgets its thread count: predict as it was fitted. With every core,
        # a one-row online prediction was many times slower while another process kept a core
        # busy (OpenMP's threads spin waiting for each other)
        booster.set_param({"nthread": PREDICT_THREADS})
        table = json.loads((directory / CALIBRATION_FILE).read_text())
        return cls(
            booster=booster,
            slope=float(table["slope"]),
            intercept=float(table["intercept"]),
            features=list(table["features"]),
        )


def train_model(
    features: pd.DataFrame,
    y: np.ndarray | pd.Series,
    params: TrainParams | None = None,
    fit_only: np.ndarray | None = None,
) -> FraudModel:
    """Fit on rows in time order: the last `calibration_share` of them only calibrates.

    Rows must be sorted by transaction time (`build_training_frame` returns them so).
    `fit_only` marks rows the booster fits on but that never calibrate: reviewed payments
    chosen by a model, which would bend its probabilities (`fit_and_calibration_rows`).
    """
    params = params or TrainParams()
    y = np.asarray(y, dtype=int)
    fit, calibration = fit_and_calibration_rows(y, params, fit_only)
    names = list(features.columns)
    X = features.to_numpy(float)
    booster = xgb.train(
        params.booster_params(names),
        xgb.QuantileDMatrix(X[fit], label=y[fit], feature_names=names, nthread=params.nthread),
        num_boost_round=params.n_estimators,
    )
    held_out = booster.predict(xgb.DMatrix(X[calibration], feature_names=names), output_margin=True)
    slope, intercept = platt(held_out, y[calibration])
    return FraudModel(booster=booster, slope=slope, intercept=intercept, features=names)


def fit_and_calibration_rows(
    y: np.ndarray, params: TrainParams, fit_only: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rows in time order) the booster fits on and the ones that calibrate it. The
    calibration slice is the latest `calibration_share` of the rows not `fit_only`, so it
    stays a sample of every payment; the `fit_only` rows all join the fit, past any legit cap
    (`_fit_rows`). Both trainers (`models.dask_train`) pick the same rows."""
    fit_only = np.zeros(len(y), dtype=bool) if fit_only is None else np.asarray(fit_only, bool)
    sample = np.flatnonzero(~fit_only)
    n_fit = split_point(y[sample], params)
    fit = np.union1d(np.flatnonzero(fit_only), sample[_fit_rows(y[sample[:n_fit]], params)])
    return fit, sample[n_fit:]


def split_point(y: np.ndarray, params: TrainParams) -> int:
    """Rows (in time order) the booster may fit on; the rest calibrate. Both trainers
    (`models.dask_train`) refuse the same windows."""
    n_fit = int(round(len(y) * (1 - params.calibration_share)))
    if not (0 < y[:n_fit].sum() < n_fit and 0 < y[n_fit:].sum() < len(y) - n_fit):
        raise ValueError(
            "training window needs frauds and legit rows in both the fit and the calibration "
            "slice: widen the window or wait for more labels"
        )
    return n_fit


def platt(margin: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the logistic map from the calibration slice's margins."""
    fitted = LogisticRegression(C=1e6).fit(margin.reshape(-1, 1), y)
    if fitted.coef_[0, 0] <= 0:
        raise ValueError(
            "the booster ranks the calibration slice's frauds no better than chance: widen the "
            "training window"
        )
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


def _fit_rows(y: np.ndarray, params: TrainParams) -> np.ndarray:
    """Indices of the rows the booster fits on, in time order: every fraud, and the legit
    rows or a seeded sample of `max_legit_rows` of them."""
    legit = np.flatnonzero(y == 0)
    if len(legit) <= params.max_legit_rows:
        return np.arange(len(y))
    rng = np.random.default_rng(params.seed)
    sample = rng.choice(legit, size=params.max_legit_rows, replace=False)
    return np.sort(np.concatenate([np.flatnonzero(y == 1), sample]))
