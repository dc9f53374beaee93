"""Route scored transactions: the decision, its review case and its audit event, per transaction.

Pure: nothing is read or written here (`fraudloop.decisions.save` stores the batch).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from fraudloop import audit
from fraudloop.decisions import DecisionBatch
from fraudloop.frames import column_values
from fraudloop.policy import (
    ACTIVE_LEARNING_QUEUE,
    REVIEW_ROUTES,
    Policy,
    Route,
    fallback_route,
    queue_priority,
    recommendation,
    route_transaction,
)
from fraudloop.redaction import redact_frame

FINAL_FOR_ROUTE = {Route.AUTO_ALLOW: "auto_approve", Route.AUTO_BLOCK: "auto_reject"}
SELECTED = "selected_for_review"  # the audit event of an active-learning pick


@dataclass(frozen=True)
class ModelInfo:
    """The model that scored a batch, as its decisions record it."""

    name: str
    version: str


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
            rt = route_transaction(score, confidence, amount, policy)
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
                    "priority": queue_priority(score, amount),
                    "created_at": now,
                    "sla_due_at": now + timedelta(minutes=sla),
                    "status": "pending",
                    "attempts": 0,
                }
            )
    return batch


def learning_cases(
    picks: pd.DataFrame, cands: pd.DataFrame, policy: Policy, now: datetime
) -> DecisionBatch:
    """Active-learning picks (`pipeline.selection`) as review cases of their own queue, each
    audited with why it was chosen. No decision changes: the automatic one stays final, and an
    answer becomes a label (`labeling.review.answers`)."""
    batch = DecisionBatch()
    queue = ACTIVE_LEARNING_QUEUE
    factor, sla = policy.priority_factor(queue), policy.queue_sla(queue)
    rows = picks.merge(cands[["transaction_id", "score", "amount"]], on="transaction_id")
    columns = ("transaction_id", "strategy", "reason", "propensity", "score", "amount")
    for tx_id, strategy, reason, propensity, score, amount in zip(
        *(column_values(rows, c) for c in columns), strict=True
    ):
        case_id = f"{tx_id}:{queue}"
        batch.reviews.append(
            {
                "case_id": case_id,
                "transaction_id": tx_id,
                "queue": queue,
                "priority": queue_priority(score, amount, factor=factor),
                "created_at": now,
                "sla_due_at": now + timedelta(minutes=sla),
                "status": "pending",
                "attempts": 0,
                "selection_reason": reason,
                "strategy": strategy,
                "propensity": propensity,
            }
        )
        batch.events.append(
            audit.event(
                f"selected:{case_id}",
                SELECTED,
                "active_learning",
                now,
                transaction_id=tx_id,
                case_id=case_id,
                strategy=strategy,
                propensity=propensity,
                reason=reason,
                policy_version=policy.version,
            )
        )
    return batch
