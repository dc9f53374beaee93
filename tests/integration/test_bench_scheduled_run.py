"""`fraudloop bench scheduled-run`, tiny: a scratch install with its own Prefect server and
the deployments served, one file scored in-process and one by a triggered run; the figures
are there and consistent, and nothing is left running or in Label Studio."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from flows import server
from labeling.client import connect

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_scheduled_run_reports_both_ways_and_the_difference(
    labelstudio: tuple[str, str], tmp_path: Path
) -> None:
    url, token = labelstudio
    out = tmp_path / "scheduled-run.json"
    ran = CliRunner().invoke(
        app,
        ["bench", "scheduled-run", "--rows", "30", "--repeats", "1", "--customers", "100"]
        + ["--url", url, "--token", token, "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert ran.exit_code == 0, ran.output
    assert "overhead (b - a)" in ran.output
    result = json.loads(out.read_text())
    assert (result["rows"], result["repeats"]) == (30, 1)
    assert result["deployments_served"] > 0
    (a,) = result["in_process_seconds"]
    (b,) = result["triggered_seconds"]
    assert a > 0 and b > 0
    assert result["overhead_median_s"] == pytest.approx(b - a, abs=0.02)
    parts = result["triggered_until_running_median_s"] + result["triggered_running_median_s"]
    assert parts == pytest.approx(b, abs=0.02)
    assert result["triggered_until_running_median_s"] > 0
    assert not server.is_up(result["prefect_api_url"])  # its scratch server was stopped
    left = connect(url, token).sdk.projects.list(title="bench-run-", page_size=100)
    assert not [p for p in left if (p.title or "").startswith("bench-run-")]
