"""`fraudloop bench weekly-report`, small: a scratch store of two simulated weeks built through
the product's write paths, then `fraudloop report weekly` timed in its own process; the
figures are in the JSON, every report file was written, and the audit chain verifies."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPORT_FILES = ("weekly-qa-2026-11-30.html", "weekly-qa-2026-11-30.pdf", "weekly-qa-2026-11-30.md")


def test_weekly_report_bench_times_the_report_and_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "weekly-report.json"
    ran = CliRunner().invoke(
        app,
        ["bench", "weekly-report", "--rows", "10000", "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert ran.exit_code == 0, ran.output
    result = json.loads(out.read_text())
    assert result["exit_code"] == 0, result["log_tail"]
    assert result["rows_in_reported_week"] == pytest.approx(10_000, rel=0.05)
    assert result["seconds"] > 0 and result["peak_rss_mb"] > 0
    assert result["tree_peak_rss_mb"] >= result["peak_rss_mb"] * 0.5  # sampled, so coarser
    stages = result["stage_seconds"]
    for task in ("drift", "read_week", "weekly_numbers", "weekly_evidently", "publish_weekly"):
        assert stages[task]["state"] == "Completed", task  # a champion: drift runs too
    assert sum(s["seconds"] for s in stages.values()) == pytest.approx(result["seconds"], abs=2.0)
    files = result["outputs"]["files"]
    for name in (*REPORT_FILES, "weekly-qa-2026-11-30.json", "evidently-weekly-2026-11-30.html"):
        assert files.get(name, 0) > 1000, name
    assert result["outputs"]["evidently_snapshot_files"] >= 1
    assert result["outputs"]["mlflow_run"]
    counts = result["store_counts"]
    assert counts["decisions"] == counts["transactions"]
    assert counts["review_cases"] > counts["review_cases_routed"] > 0  # sign-offs, Tier 2, audit
    assert counts["answers_applied"] > 0 and counts["chargebacks"] > 0
    assert result["audit_chain_ok"] and result["audit_events"] > counts["decisions"]
