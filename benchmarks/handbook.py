"""The handbook's evaluation protocol (../shared/data/README.md), its baselines, and fraudloop.

Train on `train_days` from `train_start`, leave `delay_days` whose labels are not known yet,
test on the next `test_days`. Every model sees the same information: features from the past
only, with a label known `delay_days` after its transaction (the chargeback rule, which is
what the handbook's terminal risk shifted by the delay means); no test-period label ever
reaches a model except through that rule. fraudloop picks its hyperparameters on earlier,
time-ordered (prequential) folds only, so the test days are never seen before the final score.
"""

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from fraudloop import tracking
from fraudloop.errors import FraudloopError
from models.evaluate import average_precision, brier, card_precision_top_k, roc_auc
from models.features import (
    FEATURE_COLUMNS,
    HANDBOOK_FEATURES,
    FeatureConfig,
    chronological_order,
    compute_features,
)
from models.train import FraudModel, TrainParams, train_model
from simulation.world import chargeback_labels

CP_K = 100
BASELINES = ("baseline_logreg", "baseline_rf", "baseline_xgboost")
FRAUDLOOP = "fraudloop"
N_FOLDS = 4
# prequential candidates (each costs N_FOLDS fits): the served default, the same with 300 trees,
# and a deeper model with row/column sampling
PARAM_GRID = (
    TrainParams(),
    TrainParams(n_estimators=300),
    TrainParams(
        max_depth=6,
        n_estimators=300,
        learning_rate=0.03,
        min_child_weight=3.0,
        subsample=0.8,
        colsample_bytree=0.8,
    ),
)


@dataclass(frozen=True)
class Window:
    """One protocol window: [train_start, +train_days), delay gap, then test_days."""

    train_start: datetime
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    @property
    def train_end(self) -> datetime:
        return self.train_start + timedelta(days=self.train_days)

    @property
    def test_start(self) -> datetime:
        return self.train_end + timedelta(days=self.delay_days)

    @property
    def test_end(self) -> datetime:
        return self.test_start + timedelta(days=self.test_days)

    def shifted(self, days: int) -> "Window":
        return replace(self, train_start=self.train_start + timedelta(days=days))

    def folds(self, n: int = N_FOLDS) -> list["Window"]:
        """The handbook's prequential validation folds: the latest one assesses on this
        window's training days (labels known by `test_start`), each earlier one moves back by
        `test_days`; the test days are never used."""
        first = -(self.delay_days + self.test_days)
        return [self.shifted(first - k * self.test_days) for k in range(n)]


def check_inside(tx: pd.DataFrame, windows: list[Window]) -> None:
    """Refuse windows the data cannot fill: a half-empty test week gives misleading numbers."""
    first, last = tx["tx_datetime"].min(), tx["tx_datetime"].max()
    for w in windows:
        if w.train_start < first.normalize() or w.test_end > last.normalize() + timedelta(days=1):
            raise FraudloopError(
                f"train_start {w.train_start:%Y-%m-%d}: the window "
                f"{w.train_start:%Y-%m-%d}..{w.test_end - timedelta(days=1):%Y-%m-%d} (train, "
                f"delay, test{' and prequential folds' if w is not windows[0] else ''}) lies "
                f"outside the data ({first:%Y-%m-%d}..{last:%Y-%m-%d}): choose an earlier or "
                "later --train-start or shorter periods"
            )


def with_features(
    tx: pd.DataFrame, start: datetime, end: datetime, cfg: FeatureConfig
) -> pd.DataFrame:
    """Rows of [start, end) in time order with FEATURE_COLUMNS computed from the past only.

    Labels follow the chargeback rule (known `cfg.delay_days` after the transaction), the only
    feedback the protocol allows; history reaches `cfg.history_days` back (or to the file's
    start, as in the handbook).
    """
    when = tx["tx_datetime"]
    past = tx[(when >= start - timedelta(days=cfg.history_days)) & (when < end)]
    rows = past[past["tx_datetime"] >= start]
    rows = rows.iloc[chronological_order(rows)].reset_index(drop=True)
    features = compute_features(
        past[past["tx_datetime"] < start], rows, chargeback_labels(past, cfg.delay_days), cfg
    )
    return pd.concat([rows, features], axis=1)


def train_rows(frame: pd.DataFrame, w: Window) -> pd.DataFrame:
    when = frame["tx_datetime"]
    return frame[(when >= w.train_start) & (when < w.train_end)]


def test_rows(frame: pd.DataFrame, w: Window) -> pd.DataFrame:
    """Test days without customers already known to be compromised.

    For test day i, drop every customer with a fraud in the training period or in the days
    up to test day i - delay (the handbook's rule: its test set on the default window has
    58,264 transactions).
    """
    day = frame["tx_datetime"].dt.normalize()
    fraud = frame["is_fraud"].to_numpy() == 1
    parts = []
    for i in range(w.test_days):
        known_until = w.train_end + timedelta(days=i)  # exclusive: test day i minus the delay
        known = frame.loc[
            fraud & (day >= w.train_start).to_numpy() & (day < known_until).to_numpy(),
            "customer_id",
        ]
        today = frame[(day == w.test_start + timedelta(days=i)).to_numpy()]
        parts.append(today[~today["customer_id"].isin(known)])
    return pd.concat(parts)


def metrics(rows: pd.DataFrame, score: np.ndarray) -> dict[str, float]:
    """The protocol's AUC, AP and CP@100 (detected customers leave later days)."""
    y = rows["is_fraud"].to_numpy(int)
    return {
        "auc": roc_auc(y, score),
        "ap": average_precision(y, score),
        "cp100": card_precision_top_k(rows.assign(score=score), CP_K),
    }


def fit_baseline(
    name: str, train: pd.DataFrame, nthread: int = 2
) -> Callable[[pd.DataFrame], np.ndarray]:
    """The handbook's baselines on its 15 features, inputs standardized on the training set."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    estimators = {
        "baseline_logreg": lambda: LogisticRegression(random_state=0),
        "baseline_rf": lambda: RandomForestClassifier(
            n_estimators=100, random_state=0, n_jobs=nthread
        ),
        "baseline_xgboost": lambda: XGBClassifier(random_state=0, n_jobs=nthread),
    }
    model = make_pipeline(StandardScaler(), estimators[name]())
    model.fit(train[HANDBOOK_FEATURES].to_numpy(float), train["is_fraud"].to_numpy(int))
    return lambda rows: model.predict_proba(rows[HANDBOOK_FEATURES].to_numpy(float))[:, 1]


def fit_fraudloop(train: pd.DataFrame, params: TrainParams) -> FraudModel:
    """The served pipeline: `train_model` on FEATURE_COLUMNS, rows in time order."""
    return train_model(train[FEATURE_COLUMNS], train["is_fraud"].to_numpy(int), params)


@dataclass(frozen=True)
class Selection:
    params: TrainParams
    fold_ap: pd.DataFrame  # one row per candidate, one column per fold, plus "mean"


def select_params(
    frame: pd.DataFrame,
    w: Window,
    grid: tuple[TrainParams, ...] = PARAM_GRID,
    n_folds: int = N_FOLDS,
) -> Selection:
    """The candidate with the best mean AP of its calibrated scores over the prequential folds."""
    folds = w.folds(n_folds)
    table = {}
    for i, params in enumerate(grid):
        scores = {}
        for fold in folds:
            model = fit_fraudloop(train_rows(frame, fold), params)
            test = test_rows(frame, fold)
            scores[f"{fold.train_start:%Y-%m-%d}"] = average_precision(
                test["is_fraud"].to_numpy(int), model.predict_proba(test[FEATURE_COLUMNS])
            )
        table[i] = scores
    fold_ap = pd.DataFrame(table).T.assign(mean=lambda t: t.mean(axis=1))
    return Selection(grid[int(fold_ap["mean"].idxmax())], fold_ap)


def data_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_span(w: Window, n_folds: int = N_FOLDS) -> tuple[datetime, datetime]:
    """The rows one benchmark needs features for: its earliest fold to its last test day."""
    start = w.folds(n_folds)[-1].train_start if n_folds else w.train_start
    return start, w.test_end


@dataclass(frozen=True)
class Outcome:
    """Everything one window produced; `scores` are per model, aligned with `test`."""

    window: Window
    metrics: dict[str, dict[str, float]]
    scores: dict[str, np.ndarray]
    test: pd.DataFrame
    model: FraudModel
    selection: Selection


def evaluate_window(
    frame: pd.DataFrame,
    w: Window,
    *,
    nthread: int = 2,
    n_folds: int = N_FOLDS,
    step: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """Baselines and fraudloop on one window of a `with_features` frame; `step` reports
    progress (called before each stage). `nthread` is the baselines' (fraudloop's fits keep
    TrainParams' single thread)."""
    train, test = train_rows(frame, w), test_rows(frame, w)
    scores: dict[str, np.ndarray] = {}
    for name in BASELINES:
        step(name)
        scores[name] = fit_baseline(name, train, nthread)(test)
    step("prequential selection")
    selection = select_params(frame, w, PARAM_GRID, n_folds)  # TrainParams' own nthread
    step(FRAUDLOOP)
    model = fit_fraudloop(train, selection.params)
    scores[FRAUDLOOP] = model.predict_proba(test[FEATURE_COLUMNS])
    results = {name: metrics(test, s) for name, s in scores.items()}
    results[FRAUDLOOP]["brier"] = brier(test["is_fraud"].to_numpy(int), scores[FRAUDLOOP])
    return Outcome(w, results, scores, test, model, selection)


def result_json(outcome: Outcome, sha256: str) -> dict[str, object]:
    """The benchmark's JSON: per-model metrics, the data's hash and the window."""
    return {
        **{name: {k: round(v, 6) for k, v in m.items()} for name, m in outcome.metrics.items()},
        "data_sha256": sha256,
        "train_start": f"{outcome.window.train_start:%Y-%m-%d}",
    }


def log_outcome(
    outcome: Outcome,
    sha256: str,
    tracking_uri: str,
    *,
    artifact_root: Path | None = None,
    experiment: str = "handbook-benchmark",
    shap_rows: int = 2_000,
) -> str:
    """One MLflow run: protocol and selected params, every model's metrics, the prequential
    table, PR curves, the reliability plot and a SHAP summary; returns the run id."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import shap

    experiment_id = tracking.experiment_id(tracking_uri, experiment, artifact_root)
    w, test = outcome.window, outcome.test
    y = test["is_fraud"].to_numpy(int)
    params = {
        "train_start": f"{w.train_start:%Y-%m-%d}",
        "train_days": w.train_days,
        "delay_days": w.delay_days,
        "test_days": w.test_days,
        "data_sha256": sha256,
        "test_rows": len(test),
        "prequential_folds": outcome.selection.fold_ap.shape[1] - 1,
        **{f"fraudloop.{k}": v for k, v in asdict(outcome.selection.params).items()},
    }
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=params["train_start"]) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(
            {f"{name}.{k}": v for name, m in outcome.metrics.items() for k, v in m.items()}
        )
        mlflow.log_dict(result_json(outcome, sha256), "result.json")
        mlflow.log_text(outcome.selection.fold_ap.to_csv(), "prequential_ap.csv")
        mlflow.log_figure(_pr_curves(plt, y, outcome.scores), "pr_curves.png")
        mlflow.log_figure(_reliability(plt, y, outcome.scores[FRAUDLOOP]), "reliability.png")
        sample = _shap_sample(test, shap_rows)
        contributions = outcome.model.contributions(sample)[:, :-1]
        shap.summary_plot(contributions, sample[outcome.model.features], show=False, max_display=15)
        mlflow.log_figure(plt.gcf(), "shap_summary.png")
        plt.close("all")
    return run.info.run_id


def _pr_curves(plt, y: np.ndarray, scores: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, score in scores.items():
        precision, recall, _ = precision_recall_curve(y, score)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision(y, score):.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall on the test days")
    ax.legend()
    return fig


def _reliability(plt, y: np.ndarray, score: np.ndarray):  # type: ignore[no-untyped-def]
    """Quantile bins over the top scores: with <1 % fraud, uniform bins are nearly all empty."""
    from sklearn.calibration import calibration_curve

    fig, ax = plt.subplots(figsize=(5, 5))
    top = score >= np.quantile(score, 0.99)
    for mask, label in ((np.ones_like(top), "all rows"), (top, "top 1 % of scores")):
        observed, predicted = calibration_curve(
            y[mask], score[mask], n_bins=10, strategy="quantile"
        )
        ax.plot(predicted, observed, marker="o", label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.set(
        xlabel="predicted fraud probability",
        ylabel="observed fraud rate",
        title=f"fraudloop reliability (Brier {brier(y, score):.5f})",
    )
    ax.legend()
    return fig


def _shap_sample(test: pd.DataFrame, n: int) -> pd.DataFrame:
    """Every fraud plus legit rows up to `n`, so both classes show in the summary."""
    fraud = test[test["is_fraud"] == 1]
    legit = test[test["is_fraud"] == 0]
    return pd.concat([fraud, legit.sample(max(n - len(fraud), 0), random_state=0)])
