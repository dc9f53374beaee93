"""The weekly QA report end to end: the `monitor` flow (a real Prefect run) over the hand-made
store of `tests/qa_store.py` writes HTML, PDF and Markdown under the state dir's `reports/`,
logs them to MLflow, keeps its Evidently run in the workspace; the PDF opens with every
section, and Chromium renders every section of the HTML."""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pypdf import PdfReader
from qa_store import AS_OF, POLICY, build_store

from flows.monitor import monitor_flow
from fraudloop.settings import get_settings
from monitoring.drift import drift_report
from monitoring.evidently_runs import DRIFT_TAG, PROJECT, WEEKLY_TAG, add_snapshot
from monitoring.evidently_workspace import workspace_dir
from monitoring.publish import EXPERIMENT

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SECTIONS = {
    "headline": "Headline",
    "model-quality-on-matured-labels": "Model quality on matured labels",
    "false-positives-and-negatives-by-segment": "False positives and negatives by segment",
    "human-review": "Human review",
    "label-maturity-estimated-against-realised": "Label maturity: estimated against realised",
    "drift-and-data-quality-evidently": "Drift and data quality (Evidently)",
    "alerts-promotions-and-policy-changes": "Alerts, promotions and policy changes",
    "how-this-was-computed": "How this was computed",
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Path]]:
    home = tmp_path_factory.mktemp("home")
    store = f"sqlite:///{home / 'fraudloop.db'}"
    build_store(store)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FRAUDLOOP_HOME", str(home))
        mp.setenv("FRAUDLOOP_DB_URL", store)
        get_settings.cache_clear()
        try:
            yield monitor_flow(AS_OF), home
        finally:
            get_settings.cache_clear()


def test_report_files_are_under_reports(ran: tuple[dict[str, Any], Path]) -> None:
    result, home = ran
    reports = home.resolve() / "reports"
    for key in ("report", "pdf", "markdown"):
        assert Path(result[key]).parent == reports and Path(result[key]).stat().st_size > 1000
    markdown = Path(result["markdown"]).read_text()
    assert all(f"## {title}" in markdown for title in SECTIONS.values())
    assert (reports / "policies" / f"{POLICY.version}.yaml").exists()  # kept for later diffs
    assert result["drift_html"] is None  # no champion in this store: the report goes on


def test_pdf_opens_with_every_section(ran: tuple[dict[str, Any], Path]) -> None:
    reader = PdfReader(ran[0]["pdf"])
    text = " ".join(page.extract_text() for page in reader.pages)
    assert len(reader.pages) > 1
    for title in SECTIONS.values():
        assert title in text, title
    assert "ana@x" in text  # the reviewer whose two approvals were charged back


def test_report_is_an_mlflow_run_with_its_files(ran: tuple[dict[str, Any], Path]) -> None:
    result, home = ran
    client = MlflowClient(tracking_uri=get_settings().tracking_uri)
    run = client.get_run(result["mlflow_run"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == EXPERIMENT
    assert run.data.metrics["decisions"] == 15
    assert run.data.tags["period_end"] == AS_OF.isoformat()
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    stem = f"weekly-qa-{AS_OF:%Y-%m-%d}"
    assert {f"{stem}.html", f"{stem}.pdf", f"{stem}.md", f"{stem}.json"} <= names


def test_evidently_workspace_keeps_the_weekly_run(ran: tuple[dict[str, Any], Path]) -> None:
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(workspace_dir(ran[1])))
    (project,) = workspace.search_project(PROJECT)
    runs = [workspace.get_run(project.id, i) for i in workspace.list_runs(project.id)]
    assert len(runs) == 2  # data (drift, summary) and quality (outcomes known on both sides)
    assert {r.timestamp for r in runs} == {AS_OF}  # on the period's place in the trend
    assert all(WEEKLY_TAG in r.tags for r in runs)
    assert project.dashboard.model().panels  # the trend panels `evidently ui` shows


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"the browser test needs Chromium ({CHROMIUM} is missing): "
    "`apt-get install -y chromium` (Debian; a Playwright browser download does not work here)",
)
def test_html_renders_every_section_in_chromium(ran: tuple[dict[str, Any], Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(Path(ran[0]["report"]).resolve().as_uri())
        for anchor, title in SECTIONS.items():
            heading = page.locator(f"section#{anchor} > h2")
            expect(heading).to_have_text(title)
            expect(heading).to_be_visible()
        images = page.locator("img")
        assert images.count() >= 6
        loaded = images.evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
        assert loaded
        page.screenshot(path=str(ARTIFACTS / "weekly-qa-report.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "weekly-qa-report.png").stat().st_size > 10_000


def test_daily_drift_run_is_kept_in_the_workspace(tmp_path: Path) -> None:
    """The `drift` task's call: the snapshot on the period's end, tagged as the daily run."""
    from evidently.ui.workspace import Workspace

    rng = np.random.default_rng(3)
    frames = [
        pd.DataFrame(
            {"amount": rng.lognormal(3.5 + shift, 1.0, 800), "score": rng.beta(1, 20, 800)}
        )
        for shift in (0.0, 0.8)
    ]
    found = drift_report(
        frames[0],
        frames[1],
        ["amount"],
        tmp_path / "drift.html",
        keep=lambda snapshot: add_snapshot(tmp_path, snapshot, "drift"),
        timestamp=AS_OF,
        tags=[DRIFT_TAG],
    )
    assert found.drifted_columns == ["amount"]
    workspace = Workspace.create(str(workspace_dir(tmp_path)))
    (project,) = workspace.search_project(PROJECT)
    (kept,) = [workspace.get_run(project.id, i) for i in workspace.list_runs(project.id)]
    assert kept is not None and kept.timestamp == AS_OF and kept.tags == [DRIFT_TAG]
