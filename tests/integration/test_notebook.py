"""The data scientist's walkthrough runs top to bottom (so it never rots) and finds what it says."""

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from models.features import FEATURE_COLUMNS

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "walkthrough.ipynb"
AUC_FLOOR = 0.8  # the simulator's frauds are easy to rank; a broken pipeline scores ~0.5


def _summary(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The JSON the cell tagged `summary` displays: the numbers the notebook computed."""
    cells = [c for c in nb.cells if "summary" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "the notebook needs one cell tagged `summary`"
    shown = [o["data"] for o in cells[0].outputs if "application/json" in o.get("data", {})]
    assert len(shown) == 1, cells[0].outputs
    return shown[0]["application/json"]


@pytest.mark.integration
def test_walkthrough_executes_and_computes_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDLOOP_NOTEBOOK_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    found = _summary(nb)

    assert found["week_transactions"] > 1_000
    assert 0 < found["week_fraud_rate"] < 0.2
    for name, metrics in found["holdout"].items():
        assert metrics["roc_auc"] > AUC_FLOOR, name
        assert 0 < metrics["average_precision"] <= 1, name
    assert found["holdout"]["default"]["average_precision"] > 0.5

    # the first model became champion; the second only if it won on the same holdout
    assert found["versions"] == [1, 2] and found["promoted"][0] is True
    default, shallow = (found["holdout"][k]["average_precision"] for k in ("default", "shallow"))
    assert found["promoted"][1] is (shallow > default)
    assert found["champion_version"] == (2 if found["promoted"][1] else 1)

    # scoring through the registry gives the champion's own scores
    scores = found["registered_scores"]
    assert len(scores) == 5 and all(0 <= s <= 1 for s in scores)
    assert scores == pytest.approx(found["trained_scores"], abs=1e-6)

    # drift was injected from day 38: the recent week's features moved
    assert found["n_features"] == len(FEATURE_COLUMNS)
    assert found["drifted_columns"] and set(found["drifted_columns"]) <= set(FEATURE_COLUMNS)
    report = Path(found["drift_report"])
    assert report == tmp_path / "drift.html" and report.stat().st_size > 10_000
