"""Behaviour of a model trained on a small simulated world (no MLflow here)."""

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from fraudloop.simulator import SimulationConfig, chargeback_labels, simulate
from models.explain import predict_frame
from models.features import DEFAULT_CONFIG, feature_texts
from models.train import FraudModel, TrainParams, _fit_rows, train_model
from models.training_set import TrainingFrame, build_training_frame


@pytest.fixture(scope="module")
def trained() -> tuple[FraudModel, TrainingFrame]:
    tx = simulate(SimulationConfig(n_customers=400, n_terminals=800, days=35, seed=4))
    frame = build_training_frame(tx, chargeback_labels(tx, 7), datetime(2018, 5, 6), 28)
    return train_model(frame.X, frame.y, TrainParams(n_estimators=40)), frame


def test_shap_contributions_and_bias_sum_to_the_margin(
    trained: tuple[FraudModel, TrainingFrame],
) -> None:
    model, frame = trained
    X = frame.X.tail(500)
    np.testing.assert_allclose(model.contributions(X).sum(axis=1), model.margin(X), atol=1e-4)


def test_calibrated_scores_are_probabilities(trained: tuple[FraudModel, TrainingFrame]) -> None:
    model, frame = trained
    score = model.predict_proba(frame.X)
    assert ((score >= 0) & (score <= 1)).all()
    assert score[frame.y == 1].mean() > score[frame.y == 0].mean()


def test_a_bigger_amount_never_lowers_the_score(trained: tuple[FraudModel, TrainingFrame]) -> None:
    model, frame = trained
    rows = frame.X.sample(200, random_state=0)
    amounts = np.linspace(221.0, 3_000.0, 12)
    scores = np.column_stack([model.predict_proba(rows.assign(tx_amount=a)) for a in amounts])
    assert (np.diff(scores, axis=1) >= 0).all()
    legit = model.predict_proba(rows.assign(tx_amount=20.0))
    assert (scores[:, 0] >= legit).all()


def test_predictions_carry_three_reasons_in_words(
    trained: tuple[FraudModel, TrainingFrame],
) -> None:
    model, frame = trained
    X = frame.X.iloc[np.argsort(-model.predict_proba(frame.X))[:20]]
    out = predict_frame(model, X, feature_texts(DEFAULT_CONFIG))
    assert list(out.columns) == ["score", "confidence", "reasons"]
    np.testing.assert_allclose(out["confidence"], np.maximum(out["score"], 1 - out["score"]))
    for reasons in out["reasons"].map(json.loads):
        assert len(reasons) == 3
        assert {"feature", "value", "contribution", "text"} == set(reasons[0])
        sizes = [abs(r["contribution"]) for r in reasons]
        assert sizes == sorted(sizes, reverse=True)
        assert all("risk" in r["text"] and "{" not in r["text"] for r in reasons)


def test_training_refuses_a_window_without_frauds() -> None:
    X = pd.DataFrame({"tx_amount": np.arange(10.0)})
    with pytest.raises(ValueError, match="frauds"):
        train_model(X, np.zeros(10, dtype=int))


def test_a_long_window_fits_on_every_fraud_and_a_fixed_sample_of_legit_rows() -> None:
    y = np.zeros(1_000, dtype=int)
    y[::50] = 1
    params = TrainParams(max_legit_rows=300)
    rows = _fit_rows(y, params)
    assert (y[rows] == 1).sum() == 20 and (y[rows] == 0).sum() == 300
    assert (np.diff(rows) > 0).all()  # still in time order
    np.testing.assert_array_equal(rows, _fit_rows(y, params))
    np.testing.assert_array_equal(_fit_rows(y, TrainParams()), np.arange(1_000))
