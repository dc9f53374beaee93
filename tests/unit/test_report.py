import base64
import re
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from fraudloop.alerts import Alert
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR
from monitoring.drift import DriftSummary
from monitoring.metrics import compute_metrics
from monitoring.report import ReportSummary, build_report

T0 = datetime(2026, 11, 2, 9, 0)


def decisions() -> pd.DataFrame:
    """Two days: 7 auto-allowed, 2 auto-blocked, 3 reviews of which 1 overridden, 1 pending."""
    rows = []
    for i in range(13):
        day = T0 + timedelta(days=i % 2, minutes=i)
        route, rec, score = "auto_allow", "approve", 0.05
        final: str | None = "auto_approve"
        if i in (7, 8):
            route, rec, final, score = "auto_block", "reject", "auto_reject", 0.99
        elif i >= 9:
            route, rec, score = "sync_review", "reject", 0.8
            final = {9: "human_approve", 10: "human_reject", 11: "human_reject", 12: None}[i]
        review = route == "sync_review"
        rows.append(
            {
                "transaction_id": f"t{i}",
                "decided_at": day,
                "route": route,
                "recommendation": rec,
                "final_decision": final,
                "score": score,
                "confidence": max(score, 1 - score),
                "amount": 20.0 * i,
                "review_created_at": day if review else pd.NaT,
                "reviewed_at": day + timedelta(minutes=12) if review and final else pd.NaT,
                "sla_due_at": day + timedelta(minutes=30) if review else pd.NaT,
                "reviewer": "r1" if review and final else None,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("qa")
    policy = load_policy(PACKAGE_DIR / "policy.yaml")
    metrics = compute_metrics(decisions(), policy)
    drift_html = tmp_path / "drift" / "drift.html"
    drift = DriftSummary(
        n_drifted=2,
        n_columns=15,
        share_drifted=2 / 15,
        drifted_columns=["amount", "tx_hour"],
        dataset_drift=False,
        score_drifted=True,
        html_path=drift_html,
        json_path=None,
    )
    alert = Alert(
        rule="review_latency",
        scope="sync_review",
        value=1.7,
        threshold=1.5,
        window_minutes=30,
        at=T0,
        message="sync_review: median review latency 51 min is above 1.5x the 30 min SLA",
    )
    summary = ReportSummary(
        period_start=T0,
        period_end=T0 + timedelta(days=7),
        models_trained=3,
        models_promoted=1,
        champion="fraud-detector v4",
    )
    return build_report(summary, drift, metrics, [alert], tmp_path / "reports")


def cell(page: str, label: str) -> str:
    match = re.search(rf"<td>{re.escape(label)}</td><td>([^<]*)</td>", page)
    assert match, label
    return match.group(1)


def test_report_has_headline_numbers(report: Path):
    page = report.read_text()
    expected = {
        "Transactions scored": "13",
        "Auto-allowed": "7",
        "Auto-blocked": "2",
        "Sent to review": "4",
        "Reviewed": "3",
        "Overridden": "1",
        "Override rate": "33.3%",
        "Model versions trained": "3",
        "Model versions promoted": "1",
        "Drift found": "no (2/15 features drifted; score drifted)",
    }
    assert {label: cell(page, label) for label in expected} == expected
    assert "median review latency 51 min" in page
    assert 'href="../drift/drift.html"' in page


def test_report_embeds_a_png(report: Path):
    page = report.read_text()
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match
    assert base64.b64decode(match.group(1)).startswith(b"\x89PNG\r\n\x1a\n")


def test_markdown_copy_sits_next_to_html(report: Path):
    markdown = report.with_suffix(".md").read_text()
    assert "| Transactions scored | 13 |" in markdown
    assert report.with_suffix(".png").exists()
