"""Route scored transactions: the decision, its review case and its audit event, per transaction.

Pure: nothing is read or written here (`fraudloop.decisions.save` stores the batch).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any

import pandas as pd

from fraudloop import audit
from fraudloop.decisions import DecisionBatch
from fraudloop.frames import column_values
from fraudloop.labels import CardFlag
from fraudloop.policy import (
    ACTIVE_LEARNING_QUEUE,
    POST_VERIFY_QUEUE,
    REVIEW_ROUTES,
    FallbackRule,
    Policy,
    Route,
    RuleRoute,
    fallback_condition,
    fallback_hits,
    fallback_rules,
    queue_priority,
    recommendation,
    route_transaction,
)
from fraudloop.redaction import redact_frame

FINAL_FOR_ROUTE = {Route.AUTO_ALLOW: "auto_approve", Route.AUTO_BLOCK: "auto_reject"}
SELECTED = "selected_for_review"  # the audit event of a pick (active learning, audit sample)
# who picked a label-only queue's cases: the actor of their `SELECTED` events
SELECTORS = {ACTIVE_LEARNING_QUEUE: "active_learning", POST_VERIFY_QUEUE: "audit_sample"}


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
    flagged: Mapping[str, CardFlag] | None = None,
) -> DecisionBatch:
    """Route each transaction; `scored=None` means the model is unavailable (fallback rules),
    `flagged` then holds the batch's flagged cards (`labels.flagged_cards`). A fallback
    decision's reasons are the rules that applied, the deciding one first, and its audit event
    names that one (`fallback_rule`).

    Column by column rather than `to_dict` per row: this runs for every scored transaction.
    """
    batch = DecisionBatch()
    n = len(tx)
    fallback = scored is None
    flags = flagged or {}
    words = (
        {h.rule: fallback_condition(h.rule, policy) for h in fallback_rules(policy)}
        if fallback
        else {}
    )
    rows = zip(
        column_values(tx, "transaction_id"),
        column_values(tx, "tx_datetime"),
        column_values(tx, "amount"),
        column_values(tx, "terminal_id"),
        column_values(tx, "customer_id") if fallback else repeat(None, n),
        redact_frame(tx),
        column_values(scored, "score") if scored is not None else [None] * n,
        column_values(scored, "confidence") if scored is not None else [None] * n,
        column_values(scored, "reasons") if scored is not None else repeat(None, n),
        strict=True,
    )
    for tx_id, tx_time, amount, terminal, customer, snapshot, score, confidence, why in rows:
        if score is None:
            flag = flags.get(customer)
            hits = fallback_hits(amount, terminal, flag is not None, policy)
            rt, rule = hits[0].route, hits[0].rule.value
            reasons = fallback_reasons(hits, amount, flag, words, now)
        else:
            rt, reasons, rule = route_transaction(score, confidence, amount, policy), why, None
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
        decided = audit.event(
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
        if rule is not None:  # a fallback decision names the rule that decided it
            decided["details"]["fallback_rule"] = rule
        batch.events.append(decided)
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


def fallback_reasons(
    hits: list[RuleRoute],
    amount: float,
    flag: CardFlag | None,
    words: Mapping[FallbackRule, str],
    now: datetime,
) -> list[dict[str, Any]]:
    """The fallback rules that applied as a decision's reasons, in the scoring contract's shape
    (the API and the review screen show them as they show the model's): `feature` names the
    rule's policy field, `value` is what it measured, and no model contributed."""
    out = []
    for hit in hits:
        value, why = float(amount), words[hit.rule]
        if hit.rule is FallbackRule.WATCHLIST:
            value = 1.0
        elif hit.rule is FallbackRule.FLAGGED_CARD and flag is not None:
            value = round((now - flag.at) / timedelta(days=1), 2)
            why = f"{why}: {flag.cause} {value:g} days ago"
        out.append(
            {
                "feature": f"fallback.{hit.rule.value}",
                "value": value,
                "contribution": 0.0,
                "text": f"fallback rule (no model): {why} -> {hit.route.value}",
            }
        )
    return out


def learning_cases(
    picks: pd.DataFrame,
    cands: pd.DataFrame,
    policy: Policy,
    now: datetime,
    queue: str = ACTIVE_LEARNING_QUEUE,
    details: Sequence[str] = (),
) -> DecisionBatch:
    """Picks of automatic decisions (`pipeline.selection`, or the weekly audit sample of
    `pipeline.audit_sample` with `queue=POST_VERIFY_QUEUE`) as review cases of their own queue,
    each audited with why it was chosen, its strategy and propensity, and the pick's `details`
    columns. No decision changes: the automatic one stays final, and an answer becomes a label
    (`labeling.review.answers`)."""
    batch = DecisionBatch()
    factor, sla = policy.priority_factor(queue), policy.queue_sla(queue)
    rows = picks.merge(cands[["transaction_id", "score", "amount"]], on="transaction_id")
    columns = ("transaction_id", "strategy", "reason", "propensity", "score", "amount")
    values = zip(*(column_values(rows, c) for c in (*columns, *details)), strict=True)
    for tx_id, strategy, reason, propensity, score, amount, *more in values:
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
                SELECTORS.get(queue, queue),
                now,
                transaction_id=tx_id,
                case_id=case_id,
                strategy=strategy,
                propensity=propensity,
                reason=reason,
                policy_version=policy.version,
                **dict(zip(details, more, strict=True)),
            )
        )
    return batch
