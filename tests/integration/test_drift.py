import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DriftSummary, drift_report, saved_summary

pytestmark = pytest.mark.integration

N = 2_000
FEATURES = ["amount", "tx_hour", "customer_nb_tx_7d", "terminal_risk_7d"]


def window(rng: np.random.Generator, amount_shift: float, score_a: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.5, 1.0, N) * (1 + amount_shift),
            "tx_hour": rng.integers(0, 24, N),
            "customer_nb_tx_7d": rng.poisson(5, N),
            "terminal_risk_7d": rng.integers(0, 2, N),  # 0/1: Evidently picks another test
            "score": rng.beta(score_a, 20, N),
        }
    )


@pytest.fixture(scope="module")
def drift(tmp_path_factory: pytest.TempPathFactory) -> DriftSummary:
    rng = np.random.default_rng(7)
    reference = window(rng, amount_shift=0.0, score_a=1.0)
    current = window(rng, amount_shift=0.6, score_a=3.0)
    out = tmp_path_factory.mktemp("drift")
    return drift_report(reference, current, FEATURES, out / "drift.html", out / "drift.json")


def test_shifted_column_is_drifted_and_others_are_not(drift: DriftSummary):
    assert drift.drifted_columns == ["amount"]
    assert (drift.n_drifted, drift.n_columns) == (1, len(FEATURES))
    assert drift.share_drifted == pytest.approx(0.25)
    assert drift.dataset_drift is False  # below the preset's 50 % drift share


def test_score_drift_is_reported_apart_from_features(drift: DriftSummary):
    assert drift.score_drifted is True
    assert "score" not in drift.drifted_columns


def test_html_and_json_are_written(drift: DriftSummary):
    assert drift.html_path.stat().st_size > 100_000
    assert "amount" in drift.html_path.read_text()
    assert drift.json_path is not None
    assert json.loads(Path(drift.json_path).read_text())["metrics"]


def test_a_saved_run_reads_back_as_the_same_verdicts(drift: DriftSummary, tmp_path: Path):
    """The weekly report takes the day's drift check from its files instead of running it."""
    assert drift.json_path is not None
    again = saved_summary(drift.html_path, drift.json_path, [*FEATURES, "score"])
    assert again == drift
    assert saved_summary(tmp_path / "none.html", tmp_path / "none.json", FEATURES) is None
