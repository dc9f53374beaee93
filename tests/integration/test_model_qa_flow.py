"""`fraudloop report model-qa` end to end: the `model-qa` flow (a real Prefect run) over the
hand-made store writes the monthly model QA (HTML, PDF with every section, Markdown) and logs
it to MLflow."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from pypdf import PdfReader
from qa_store import AS_OF, build_store
from typer.testing import CliRunner

from cli.report import report_app
from fraudloop.settings import get_settings
from monitoring.publish import EXPERIMENT

pytestmark = pytest.mark.integration
SECTIONS = (
    "Performance and calibration by cohort",
    "Bias checks",
    "Drift of the features and the score",
    "Champion history",
)


def test_model_qa_command_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path / 'fraudloop.db'}"
    build_store(store)
    monkeypatch.setenv("FRAUDLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUDLOOP_DB_URL", store)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(report_app, ["model-qa", "--as-of", AS_OF.isoformat()])
        tracking = get_settings().tracking_uri
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    stem = tmp_path.resolve() / "reports" / f"model-qa-{AS_OF:%Y-%m-%d}"
    text = " ".join(p.extract_text() for p in PdfReader(f"{stem}.pdf").pages)
    for title in SECTIONS:
        assert title in text, title
    markdown = Path(f"{stem}.md").read_text()
    assert "| customer tenure (days) | 30-90 |" in markdown  # c1's two payments
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert [r.data.tags["report"] for r in runs] == ["model-qa"]
