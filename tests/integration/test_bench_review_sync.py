"""`fraudloop bench review-sync`, tiny, against the session's Label Studio: every figure is
there, the answers were applied, and the idle pass read nothing."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from labeling.client import connect

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TASKS = 30


def test_review_sync_reports_an_idle_pass_that_reads_nothing(
    labelstudio: tuple[str, str], tmp_path: Path
) -> None:
    url, token = labelstudio
    out = tmp_path / "review-sync.json"
    ran = CliRunner().invoke(
        app,
        ["bench", "review-sync", "--tasks", str(TASKS), "--webhooks", "3"]
        + ["--url", url, "--token", token, "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert ran.exit_code == 0, ran.output
    assert "idle: nothing changed" in ran.output
    result = json.loads(out.read_text())
    assert result["n"] == TASKS
    assert 0 < result["delivered"] <= TASKS
    cases = result["apply_rows_read"]
    assert cases >= result["delivered"]  # every case once in the answers project
    assert result["tasks_in_queues"] == result["delivered"] + cases
    assert sum(result["apply_outcomes"].values()) == cases
    assert "already_seen" not in result["apply_outcomes"]
    # inside the overlap the same answers are read again, and known
    assert result["overlap_resync_rows_read"] == cases
    assert result["overlap_resync_outcomes"] == {"already_seen": cases}
    # nothing changed for longer than the overlap: nothing is read
    assert result["idle_rows_read"] == 0
    assert result["idle_outcomes"] == {}
    assert result["webhook_n"] == 3
    assert 0 < result["webhook_p50_s"] <= result["webhook_max_s"]
    for key in ("deliver_seconds", "apply_seconds", "overlap_resync_seconds", "idle_seconds"):
        assert result[key] >= 0, key
    assert result["machine"]["cpus"] >= 1
    left = connect(url, token).sdk.projects.list(title="bench-", page_size=100)
    assert not [p for p in left if (p.title or "").startswith("bench-")]  # cleaned up
