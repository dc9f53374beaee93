"""The end-of-run summary: what the loop did, counted from the store, and where to look."""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fraudloop.decisions import monitoring_frame
from fraudloop.settings import Settings
from fraudloop.storage import Quarantine
from monitoring.metrics import override_rate
from monitoring.qa_data import count_events

ESCALATION_EVENT = "escalated"  # `labeling.review.cases.close`


def loop_summary(
    session: Session, settings: Settings, trained: list[dict[str, Any]], monitoring: dict[str, Any]
) -> dict[str, Any]:
    """Counts for the demo table (same definitions as the QA report), plus where to look next."""
    frame = monitoring_frame(session)
    finals = frame["final_decision"].value_counts()
    overrides = override_rate(frame)
    counts = {
        "transactions_scored": len(frame),
        "auto_allowed": int(finals.get("auto_approve", 0)),
        "auto_blocked": int(finals.get("auto_reject", 0)),
        "sent_to_review": int(frame["review_created_at"].notna().sum()),
        "reviewed": overrides.reviewed,
        "overridden": overrides.overridden,
        # a case that left its queue upward (to Tier 2, or a Tier 3 page) is an `escalated`
        # audit event; no decision ever ends as "escalated", its transaction is decided later
        "escalated": count_events(session, ESCALATION_EVENT),
        "awaiting_review": int(
            (frame["review_created_at"].notna() & frame["final_decision"].isna()).sum()
        ),
        "quarantined": session.scalar(select(func.count()).select_from(Quarantine)) or 0,
        "model_versions_trained": len(trained),
        "models_promoted": sum(1 for t in trained if t.get("promoted")),
        "drifted_features": monitoring.get("drifted", "n/a"),
    }
    where = {
        "MLflow UI": f"uv run mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000",
        "Label Studio": f"{settings.labelstudio_url}  (login {settings.labelstudio_username} / "
        f"{settings.labelstudio_password}; stop with `uv run fraudloop down`)",
        "QA report": str(monitoring.get("report")),
        "Drift report": str(monitoring.get("drift_html")),
        "Decision store": settings.database_url,
    }
    return {"counts": counts, "where": where}
