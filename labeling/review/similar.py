"""Past reviewed cases most like a new one, so a reviewer sees how similar cases were decided.

Nearest neighbours among decisions people made (never the model's own), on what the reviewer
can check: amount (log), score, time of day, same customer, same terminal. Only stored decision
columns and the redacted snapshot's ids are read, so nothing sensitive can come out.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop.policy import SimilarWeights
from fraudloop.storage import Decision

DISPOSITION = {"human_approve": "approved (legitimate)", "human_reject": "rejected (fraud)"}


def similar_cases(
    session: Session,
    cases: Sequence[Decision],
    k: int,
    pool: int,
    weights: SimilarWeights | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """transaction_id -> up to k reviewed cases, nearest first, from the `pool` latest reviews.

    `weights` (the policy's `escalation.similar_weights`) bring cases of the same customer or
    terminal nearer; without them only amount, score and time of day count.
    """
    if k <= 0 or not cases:
        return {}
    reviewed = list(
        session.execute(
            select(
                Decision.transaction_id,
                Decision.tx_datetime,
                Decision.amount,
                Decision.score,
                Decision.final_decision,
                Decision.input_snapshot,
            )
            .where(Decision.final_decision.in_(list(DISPOSITION)))
            .order_by(Decision.reviewed_at.desc())
            .limit(pool)
        )
    )
    if not reviewed:
        return {c.transaction_id: [] for c in cases}
    ref = _features(reviewed)
    scale = ref.std(axis=0)
    scale[scale == 0] = 1.0
    ref_ids = _ids(reviewed)
    out: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        point = _features([case])[0]
        dist = (((ref - point) / scale) ** 2).sum(axis=1)
        customer, terminal = _ids([case])[0]
        if weights is not None:
            dist += weights.same_customer * np.array([c != customer for c, _ in ref_ids])
            dist += weights.same_terminal * np.array([t != terminal for _, t in ref_ids])
        order = [
            i for i in np.argsort(dist, kind="stable") if reviewed[i][0] != case.transaction_id
        ]
        out[case.transaction_id] = [
            _row(reviewed[i], customer, terminal, float(dist[i])) for i in order[:k]
        ]
    return out


def _features(rows: Sequence[Any]) -> np.ndarray:
    """log amount, score, and the hour on a circle (23:00 is close to 01:00)."""
    hours = np.array([r.tx_datetime.hour + r.tx_datetime.minute / 60 for r in rows])
    angle = 2 * np.pi * hours / 24
    return np.column_stack(
        [
            np.log1p([r.amount for r in rows]),
            [r.score if r.score is not None else 1.0 for r in rows],
            np.sin(angle),
            np.cos(angle),
        ]
    )


def _ids(rows: Sequence[Any]) -> list[tuple[Any, Any]]:
    return [
        ((r.input_snapshot or {}).get("customer_id"), (r.input_snapshot or {}).get("terminal_id"))
        for r in rows
    ]


def _row(row: Any, customer: Any, terminal: Any, distance: float) -> dict[str, Any]:
    snapshot = row.input_snapshot or {}
    return {
        "transaction_id": row.transaction_id,
        "when": row.tx_datetime.strftime("%Y-%m-%d %H:%M"),
        "amount": round(float(row.amount), 2),
        "score": None if row.score is None else round(float(row.score), 3),
        "same_customer": snapshot.get("customer_id") == customer,
        "same_terminal": snapshot.get("terminal_id") == terminal,
        "disposition": DISPOSITION[row.final_decision],
        "distance": round(distance, 3),
    }
