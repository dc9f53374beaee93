"""Card precision top-k on a hand-made frame; the usual metrics on trivial inputs."""

import numpy as np
import pandas as pd
import pytest

from models.evaluate import brier, card_precision_top_k, evaluate, roc_auc


def predictions(rows: list[tuple[str, str, float, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["tx_datetime", "customer_id", "score", "is_fraud"])
    return frame.assign(tx_datetime=pd.to_datetime(frame["tx_datetime"]))


def test_card_precision_ranks_customers_by_their_best_score_per_day() -> None:
    day = predictions(
        [
            ("2024-01-01 09:00", "A", 0.10, 1),
            ("2024-01-01 10:00", "A", 0.90, 0),  # A's best score, and A is compromised today
            ("2024-01-01 11:00", "B", 0.80, 0),
            ("2024-01-01 12:00", "B", 0.70, 0),
            ("2024-01-01 13:00", "C", 0.50, 1),
        ]
    )
    assert card_precision_top_k(day, 2) == pytest.approx(0.5)
    assert card_precision_top_k(day, 3) == pytest.approx(2 / 3)
    assert card_precision_top_k(day, 4) == pytest.approx(2 / 4)  # divided by k, not by customers


def test_customers_detected_on_earlier_days_are_removed() -> None:
    two_days = predictions(
        [
            ("2024-01-01 10:00", "A", 0.90, 1),
            ("2024-01-01 10:00", "B", 0.80, 0),
            ("2024-01-01 10:00", "C", 0.10, 1),  # missed on day 1: stays a candidate
            ("2024-01-02 10:00", "A", 0.99, 1),  # found on day 1: left out on day 2
            ("2024-01-02 10:00", "B", 0.60, 0),
            ("2024-01-02 10:00", "C", 0.50, 1),
            ("2024-01-02 10:00", "D", 0.40, 0),
        ]
    )
    # day 1: top-2 {A, B} -> 1/2; day 2 without A: top-2 {B, C} -> 1/2
    assert card_precision_top_k(two_days, 2) == pytest.approx(0.5)
    # day 1: top-1 {A} -> 1; day 2: top-1 {B} -> 0 (A would have scored 1 without removal)
    assert card_precision_top_k(two_days, 1) == pytest.approx(0.5)


def test_score_ties_are_broken_by_customer_id() -> None:
    tie = predictions([("2024-01-01", "B", 0.5, 0), ("2024-01-01", "A", 0.5, 1)])
    assert card_precision_top_k(tie, 1) == 1.0


def test_evaluate_reports_every_metric() -> None:
    frame = predictions(
        [("2024-01-01", "A", 0.9, 1), ("2024-01-01", "B", 0.2, 0), ("2024-01-02", "C", 0.1, 0)]
    )
    metrics = evaluate(frame, k=1)
    assert metrics["roc_auc"] == 1.0
    assert metrics["average_precision"] == 1.0
    assert metrics["card_precision_top_1"] == pytest.approx(0.5)
    assert metrics["brier"] == pytest.approx(np.mean([0.01, 0.04, 0.01]))
    assert roc_auc(np.array([0, 1]), np.array([0.9, 0.1])) == 0.0
    assert brier(np.array([1]), np.array([1.0])) == 0.0
