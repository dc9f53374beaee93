"""Scores become stored decisions, review work and audit events; reviews flow back into them."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.frames import column_values
from fraudloop.labels import add_labels
from fraudloop.policy import REVIEW_ROUTES, Policy, Route, fallback_route, recommendation, route
from fraudloop.redaction import redact, redact_frame
from fraudloop.schema import Rejection
from fraudloop.similar import similar_cases
from fraudloop.storage import (
    Decision,
    Quarantine,
    ReviewTask,
    insert_ignore,
    read_frame,
    set_status,
)

FINAL_FOR_ROUTE = {Route.AUTO_ALLOW: "auto_approve", Route.AUTO_BLOCK: "auto_reject"}
HUMAN_DECISIONS = {"human_approve": 0, "human_reject": 1}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str


@dataclass
class DecisionBatch:
    decisions: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def build_decisions(
    tx: pd.DataFrame,
    scored: pd.DataFrame | None,
    policy: Policy,
    model: ModelInfo | None,
    now: datetime,
) -> DecisionBatch:
    """Route each transaction; `scored=None` means the model is unavailable (fallback rules).

    Column by column rather than `to_dict` per row: this runs for every scored transaction.
    """
    batch = DecisionBatch()
    n = len(tx)
    rows = zip(
        column_values(tx, "transaction_id"),
        column_values(tx, "tx_datetime"),
        column_values(tx, "amount"),
        column_values(tx, "terminal_id"),
        redact_frame(tx),
        column_values(scored, "score") if scored is not None else [None] * n,
        column_values(scored, "confidence") if scored is not None else [None] * n,
        column_values(scored, "reasons") if scored is not None else [[] for _ in range(n)],
        strict=True,
    )
    for tx_id, tx_time, amount, terminal, snapshot, score, confidence, reasons in rows:
        if score is None:
            rt = fallback_route(amount, terminal, policy)
        else:
            rt = route(score, confidence, policy)
        final = FINAL_FOR_ROUTE.get(rt)
        model_version = model.version if model and score is not None else None
        batch.decisions.append(
            {
                "transaction_id": tx_id,
                "decided_at": now,
                "tx_datetime": tx_time,
                "amount": amount,
                "score": score,
                "confidence": confidence,
                "route": rt.value,
                "recommendation": recommendation(rt),
                "final_decision": final,
                "fallback": score is None,
                "model_name": model.name if model and model_version is not None else None,
                "model_version": model_version,
                "policy_version": policy.version,
                "reasons": reasons,
                "input_snapshot": snapshot,
            }
        )
        batch.events.append(
            audit.event(
                f"decision:{tx_id}",
                "decision" if final else "routed_to_review",
                "model" if score is not None else "fallback_rules",
                now,
                transaction_id=tx_id,
                input_snapshot=snapshot,
                model_version=model_version,
                model_confidence=confidence,
                explanation_tokens=[r["text"] for r in reasons],
                decision=final,
                route=rt.value,
                policy_version=policy.version,
            )
        )
        if rt in REVIEW_ROUTES:
            sla = policy.sla_for(rt) or 0
            batch.reviews.append(
                {
                    "case_id": f"{tx_id}:{rt.value}",
                    "transaction_id": tx_id,
                    "queue": rt.value,
                    "priority": round((score if score is not None else 1.0) * amount, 4),
                    "created_at": now,
                    "sla_due_at": now + timedelta(minutes=sla),
                    "status": "pending",
                    "attempts": 0,
                }
            )
    return batch


def save(session: Session, batch: DecisionBatch) -> int:
    """Persist a batch atomically; decisions already stored are kept (idempotent). Returns new."""
    new = insert_ignore(session, Decision, batch.decisions)
    insert_ignore(session, ReviewTask, batch.reviews)
    audit.append(session, batch.events)
    return new


def quarantine(session: Session, rejections: list[Rejection], now: datetime) -> int:
    """Keep rejected records with their reason; ids and field names are cut to the column size
    (the record itself keeps the full text), so odd input can never fail the write."""
    rows = [
        {
            "received_at": now,
            "transaction_id": r.transaction_id[:64] if r.transaction_id else None,
            "field": r.field[:64],
            "problem": r.problem,
            "record": redact(r.record),
        }
        for r in rejections
    ]
    return insert_ignore(session, Quarantine, rows)


def apply_review(session: Session, outcome: dict[str, Any], now: datetime) -> bool:
    """Record a reviewer's decision once (decision, audit event, label); False if seen before."""
    task = session.get(ReviewTask, outcome["case_id"])
    if task is None:
        return False
    key = f"review:{outcome['case_id']}:{outcome['annotation_id']}:{outcome['updated_at']}"
    actual = (now - task.created_at).total_seconds() / 60
    expected = (task.sla_due_at - task.created_at).total_seconds() / 60
    event = audit.event(
        key,
        "review",
        outcome["reviewer"],
        now,
        transaction_id=task.transaction_id,
        decision=outcome["decision"],
        review_rationale=outcome.get("rationale"),
        sla_metadata={
            "expected_minutes": expected,
            "actual_minutes": round(actual, 2),
            "queue": task.queue,
            "met": actual <= expected,
        },
        annotation_id=outcome["annotation_id"],
    )
    if audit.append(session, [event]) == 0:
        return False
    session.execute(
        update(Decision)
        .where(Decision.transaction_id == task.transaction_id)
        .values(
            final_decision=outcome["decision"],
            reviewer=outcome["reviewer"],
            review_rationale=outcome.get("rationale"),
            reviewed_at=now,
        )
    )
    set_status(session, [task.case_id], status="reviewed")
    if outcome["decision"] in HUMAN_DECISIONS:
        add_labels(
            session,
            [
                {
                    "transaction_id": task.transaction_id,
                    "is_fraud": HUMAN_DECISIONS[outcome["decision"]],
                    "known_at": now,
                    "source": "review",
                    "actor": outcome["reviewer"],
                }
            ],
        )
    return True


def pending_deliveries(session: Session, limit: int) -> list[ReviewTask]:
    """Review work not yet in Label Studio, most valuable first."""
    stmt = (
        select(ReviewTask)
        .where(ReviewTask.status == "pending")
        .order_by(ReviewTask.priority.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def decisions_frame(session: Session) -> pd.DataFrame:
    return read_frame(session, select(Decision))


def review_cases(
    session: Session, tasks: list[ReviewTask], similar_k: int = 0, similar_pool: int = 1
) -> list[dict[str, Any]]:
    """What Label Studio needs for each task: redacted snapshot, score, reasons, SLA, priority
    and (with `similar_k`) the most similar cases people already decided."""
    ids = [t.transaction_id for t in tasks]
    rows = {
        d.transaction_id: d
        for d in session.scalars(select(Decision).where(Decision.transaction_id.in_(ids)))
    }
    similar = similar_cases(session, list(rows.values()), similar_k, similar_pool)
    return [
        {
            "case_id": t.case_id,
            "transaction_id": t.transaction_id,
            "queue": t.queue,
            "snapshot": rows[t.transaction_id].input_snapshot,
            "score": rows[t.transaction_id].score or 0.0,
            "recommendation": rows[t.transaction_id].recommendation,
            "reasons": rows[t.transaction_id].reasons,
            "model_version": rows[t.transaction_id].model_version or "fallback",
            "sla_due_at": t.sla_due_at,
            "priority": t.priority,
            "similar": similar.get(t.transaction_id, []),
        }
        for t in tasks
    ]


def monitoring_frame(session: Session, since: datetime | None = None) -> pd.DataFrame:
    """Decisions with their review timing, the one frame every monitoring metric reads."""
    stmt = select(
        Decision,
        ReviewTask.created_at.label("review_created_at"),
        ReviewTask.sla_due_at,
    ).outerjoin(
        ReviewTask,
        (ReviewTask.transaction_id == Decision.transaction_id)
        & ReviewTask.parent_case_id.is_(None),  # the first case: escalations are its follow-ups
    )
    if since is not None:
        stmt = stmt.where(Decision.decided_at >= since)
    frame = read_frame(session, stmt)
    for column in ("decided_at", "tx_datetime", "reviewed_at", "review_created_at", "sla_due_at"):
        frame[column] = pd.to_datetime(frame[column])
    return frame
