"""Behaviour of a model trained on a small simulated world (no MLflow here)."""

import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from models.explain import predict_frame
from models.features import DEFAULT_CONFIG, compute_features, feature_texts
from models.train import FraudModel, TrainParams, _fit_rows, train_model
from models.training_set import TrainingFrame, build_training_frame
from simulation.world import SimulationConfig, chargeback_labels, luhn_complete, simulate

AS_OF = datetime(2018, 5, 6)  # the end of the simulated 35 days: trained on the 28 before


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Transactions and the chargeback labels a 7-day delay makes known."""
    tx = simulate(SimulationConfig(n_customers=400, n_terminals=800, days=35, seed=4))
    return tx, chargeback_labels(tx, 7)


@pytest.fixture(scope="module")
def trained(world: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[FraudModel, TrainingFrame]:
    tx, labels = world
    frame = build_training_frame(tx, labels, AS_OF, 28)
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


def _other_sensitive_values(tx: pd.DataFrame, field: str, how: str) -> pd.Series:
    """Another card number, e-mail or IP address for every transaction: one shared by all of
    them, or a fresh one each (a new card, a new mailbox, a new network)."""
    n = len(tx)
    if how == "shared":
        return pd.Series(
            {
                "card_number": "4000000000000002",
                "email": "x@shared.example",
                "ip_address": "10.0.0.1",
            }[field],
            index=tx.index,
        )
    rng = np.random.default_rng(11)
    fresh = {
        "card_number": lambda: luhn_complete(rng.integers(0, 10, (n, 15))),
        "email": lambda: np.array([f"someone{i}@elsewhere.example" for i in range(n)]),
        "ip_address": lambda: np.array([f"172.16.{i // 250}.{i % 250}" for i in range(n)]),
    }[field]()
    return pd.Series(fresh, index=tx.index)


@pytest.mark.parametrize("how", ["shared", "fresh"])
@pytest.mark.parametrize("field", ["card_number", "email", "ip_address"])
def test_card_email_and_ip_never_change_a_score(
    world: tuple[pd.DataFrame, pd.DataFrame],
    trained: tuple[FraudModel, TrainingFrame],
    field: str,
    how: str,
) -> None:
    """They are no features: changed in the scored day and in its whole history, the features,
    the score and its reasons stay the same to the bit."""
    tx, labels = world
    model, _ = trained
    changed = tx.assign(**{field: _other_sensitive_values(tx, field, how)})
    assert (changed[field] != tx[field]).mean() > 0.99

    def scored(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The window's last day, as scoring sees it: its history before it, labels known."""
        when = frame["tx_datetime"]
        start = AS_OF - timedelta(days=1)
        day = frame[when >= start].drop(columns=["is_fraud", "fraud_scenario"])
        history = frame[(when < start) & (when >= start - timedelta(DEFAULT_CONFIG.history_days))]
        features = compute_features(history, day, labels)
        return features, predict_frame(model, features, feature_texts(DEFAULT_CONFIG))

    features, out = scored(tx)
    features_changed, out_changed = scored(changed)
    assert len(features) > 500 and out["score"].nunique() > 100  # a day worth scoring
    pd.testing.assert_frame_equal(features_changed, features, check_exact=True)
    np.testing.assert_array_equal(
        model.predict_proba(features_changed), model.predict_proba(features)
    )
    pd.testing.assert_frame_equal(out_changed, out, check_exact=True)


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
