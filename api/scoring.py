"""`POST /v1/score` and decision reads: the online face of `pipeline.decide.decide`.

A transaction id is scored once: a retry (same id, same transaction) returns the stored
decision, marked `replayed`; the same id with a different amount or time is a 409. Bad input is
a 4xx naming the record, the field and the problem, and the bad records go to quarantine.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import Permission, Principal, require
from api.bodies import json_records, one_or_many, unprocessable
from fraudloop.clock import utcnow
from fraudloop.decisions import quarantine
from fraudloop.policy import Limits, Policy, Route
from fraudloop.redaction import redact
from fraudloop.schema import ID_LENGTH, Rejection, Transaction, transactions_frame, validate_record
from fraudloop.storage import AuditEvent, Decision, open_session, writing
from models.scoring import ScoringModel
from pipeline.decide import decide

router = APIRouter(prefix="/v1", tags=["decisions"])

ACTION = {Route.AUTO_ALLOW: "allow", Route.AUTO_BLOCK: "block"}  # review routes: "review"


class Reason(BaseModel):
    feature: str
    value: float
    contribution: float
    text: str


class ScoredTransaction(BaseModel):
    """What the payment flow acts on (`decision`) and why, with the versions that decided."""

    transaction_id: str
    decision: Literal["allow", "block", "review"]
    route: Route
    recommendation: str
    final_decision: str | None
    score: float | None
    confidence: float | None
    reasons: list[Reason]
    fallback: bool
    model_name: str | None
    model_version: str | None
    policy_version: str
    decided_at: datetime
    replayed: bool


class StoredDecision(ScoredTransaction):
    """A decision as reviewers see it: redacted snapshot and the review, if any."""

    input_snapshot: dict[str, Any]
    reviewer: str | None
    review_rationale: str | None
    reviewed_at: datetime | None


_ANSWERS = TypeAdapter(list[ScoredTransaction])
# compared as the decision stored them (redacted: a card by its masked form)
_SAME_FIELDS = ("customer_id", "terminal_id", "card")
_COLUMNS = list(Decision.__table__.columns)  # a decision row as plain values, no ORM objects
_ANSWERED = [  # taken as stored; the others are derived from the stored row
    name
    for name in ScoredTransaction.model_fields
    if name not in ("decision", "reasons", "replayed")
]


@router.post(
    "/score",
    tags=["scoring"],
    response_model=ScoredTransaction | list[ScoredTransaction],
    openapi_extra=one_or_many(Transaction),
    responses={
        401: {"description": "no or unknown API key"},
        403: {"description": "the key's role may not score"},
        409: {"description": "a transaction id was already decided with other values"},
        422: {"description": "bad input: record index, field and problem"},
    },
)
def score(
    request: Request,
    body: Annotated[Any, Body()],
    principal: Annotated[Principal, Depends(require(Permission.SCORE))],
) -> Response:
    """Decide one transaction (JSON object) or a batch (JSON array, at most
    FRAUDLOOP_API_MAX_BATCH), idempotently by transaction id."""
    state = request.app.state
    url = state.settings.database_url
    records = json_records(body, state.settings.api_max_batch, "transaction")
    valid = _validated(url, records, state.policy.limits)
    refusal = state.rate_limits.over(principal.name, valid)
    if refusal is not None:
        with writing(url) as session:
            refusal.audit(session, utcnow())
        raise refusal.error()
    with writing(url) as session:
        seen = _stored(session, [t.transaction_id for t in valid])
        _check_same(valid, seen)
        answers = {i: _answer(row, replayed=True) for i, row in seen.items()}
        fresh = [t for t in valid if t.transaction_id not in seen]
        if fresh:
            answers |= _decide(session, fresh, state.models.current(), state.policy)
    out = [answers[t.transaction_id] for t in valid]
    # serialized here, not by FastAPI: it would validate the answers against the response
    # model again and encode them with the standard json module
    content = _ANSWERS.dump_json(out) if isinstance(body, list) else out[0].model_dump_json()
    return Response(content, media_type="application/json")


def _decide(
    session: Session, fresh: list[Transaction], model: ScoringModel | None, policy: Policy
) -> dict[str, ScoredTransaction]:
    """Answers from the decisions just built; re-read only if a concurrent writer stored some
    of the same ids first (then the stored decision is the answer, as for any retry)."""
    done = decide(session, transactions_frame(fresh), model, policy, utcnow())
    if done.new == len(fresh):
        return {d["transaction_id"]: _answer(d, replayed=False) for d in done.decisions}
    stored = _stored(session, [t.transaction_id for t in fresh])
    built = {d["transaction_id"]: d["decided_at"] for d in done.decisions}
    return {  # a decision stored by the concurrent writer has its own time: for us, a replay
        i: _answer(row, replayed=row["decided_at"] != built.get(i)) for i, row in stored.items()
    }


@router.get(
    "/decisions/{transaction_id}",
    response_model=StoredDecision,
    responses={404: {"description": "no decision for this transaction id"}},
)
def get_decision(
    request: Request,
    transaction_id: Annotated[str, Path(min_length=1, max_length=ID_LENGTH)],
    _: Annotated[Principal, Depends(require(Permission.READ_DECISION))],
) -> StoredDecision:
    """The stored decision (sensitive fields redacted) and its review."""
    with open_session(request.app.state.settings.database_url) as session:
        row = _stored(session, [transaction_id]).get(transaction_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision for {transaction_id}")
    return StoredDecision(
        **_answer(row, replayed=True).model_dump(),
        input_snapshot=row["input_snapshot"],
        reviewer=row["reviewer"],
        review_rationale=row["review_rationale"],
        reviewed_at=row["reviewed_at"],
    )


@router.get(
    "/decisions/{transaction_id}/audit",
    responses={404: {"description": "no audit events for this transaction id"}},
)
def get_audit_trail(
    request: Request,
    transaction_id: Annotated[str, Path(min_length=1, max_length=ID_LENGTH)],
    _: Annotated[Principal, Depends(require(Permission.READ_AUDIT))],
) -> list[dict[str, Any]]:
    """Every audit event of one transaction in chain order, with reviewer ids and rationales."""
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.transaction_id == transaction_id)
        .order_by(AuditEvent.seq)
    )
    with open_session(request.app.state.settings.database_url) as session:
        events = list(session.scalars(stmt))
    if not events:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no audit events for {transaction_id}")
    columns = [c.key for c in AuditEvent.__table__.columns]
    return [{c: getattr(e, c) for c in columns} for e in events]


def _validated(url: str, records: list[dict[str, Any]], limits: Limits) -> list[Transaction]:
    """Schema at the door: all or nothing, rejected records quarantined with their reason."""
    results = [validate_record(r, limits) for r in records]
    rejected = [(i, r) for i, r in enumerate(results) if isinstance(r, Rejection)]
    if rejected:
        with writing(url) as session:
            quarantine(session, [r for _, r in rejected], utcnow(), limits.quarantine_record_bytes)
        unprocessable(
            [
                {
                    "index": i,
                    "transaction_id": r.transaction_id,
                    "field": e.field,
                    "problem": e.problem,
                }
                for i, r in rejected
                for e in r.errors
            ]
        )
    valid = [r for r in results if isinstance(r, Transaction)]
    ids = [t.transaction_id for t in valid]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        unprocessable(
            [
                {
                    "field": "transaction_id",
                    "transaction_id": i,
                    "problem": "repeated in this batch",
                }
                for i in repeated
            ]
        )
    return valid


def _stored(session: Session, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = session.execute(select(*_COLUMNS).where(Decision.transaction_id.in_(ids)))
    return {row.transaction_id: dict(row._mapping) for row in rows}


def _check_same(valid: list[Transaction], seen: dict[str, dict[str, Any]]) -> None:
    """A retry must be the same transaction: an id reused for another one (other amount, time,
    customer, terminal or card) is a client error, never the old decision replayed."""
    for t in valid:
        row = seen.get(t.transaction_id)
        if row is None:
            continue
        snapshot, ours = row["input_snapshot"] or {}, redact(t.model_dump())
        for field, mine, theirs in (
            ("amount", round(t.amount, 6), round(row["amount"], 6)),
            ("tx_datetime", t.tx_datetime, row["tx_datetime"]),
            *((name, ours.get(name), snapshot.get(name)) for name in _SAME_FIELDS),
        ):
            if mine != theirs:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    detail=[
                        {
                            "transaction_id": t.transaction_id,
                            "field": field,
                            "problem": f"{t.transaction_id} was already decided for another "
                            f"transaction ({field} differs)",
                        }
                    ],
                )


def _answer(decision: Mapping[str, Any], replayed: bool) -> ScoredTransaction:
    """The answer from a decision's stored columns (a built decision has the same keys)."""
    route = Route(decision["route"])
    return ScoredTransaction(
        **{name: decision[name] for name in _ANSWERED},
        decision=ACTION.get(route, "review"),
        reasons=[Reason.model_validate(r) for r in decision["reasons"] or []],
        replayed=replayed,
    )
