"""`POST /v1/chargebacks`: chargebacks as the card network reports them, beside the landing
folder (`fraudloop.intake`), through the same function.

Each becomes a fraud label known from the moment it arrived and an audit event, once per
transaction: a retry changes nothing and is answered `repeated`. A chargeback for a transaction
never decided here is kept in quarantine with the reason and answered as such (the caller cannot
know which transactions we saw); a malformed one is a 422 naming the field, and quarantined too.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel

from api.auth import Permission, Principal, require
from api.bodies import json_records, one_or_many, unprocessable
from fraudloop.clock import utcnow
from fraudloop.decisions import quarantine
from fraudloop.intake import Chargeback, record_chargebacks, validate_chargeback
from fraudloop.schema import Rejection
from fraudloop.storage import writing

router = APIRouter(prefix="/v1", tags=["chargebacks"])


class Quarantined(BaseModel):
    transaction_id: str | None
    field: str
    problem: str


class ChargebacksRecorded(BaseModel):
    recorded: int
    repeated: int
    quarantined: list[Quarantined]


@router.post(
    "/chargebacks",
    response_model=ChargebacksRecorded,
    openapi_extra=one_or_many(Chargeback),
    responses={
        401: {"description": "no or unknown API key"},
        403: {"description": "the key's role may not report chargebacks"},
        422: {"description": "bad input: record index, field and problem"},
    },
)
def post_chargebacks(
    request: Request,
    body: Annotated[Any, Body()],
    principal: Annotated[Principal, Depends(require(Permission.REPORT_CHARGEBACK))],
) -> ChargebacksRecorded:
    """Record one chargeback (a JSON object: transaction_id, date, reason) or a batch (an
    array, at most FRAUDLOOP_API_MAX_BATCH), idempotently by transaction id."""
    state = request.app.state
    url, max_bytes = state.settings.database_url, state.policy.limits.quarantine_record_bytes
    records = json_records(body, state.settings.api_max_batch, "chargeback")
    now = utcnow()
    bad = [
        (i, r) for i, r in enumerate(map(validate_chargeback, records)) if isinstance(r, Rejection)
    ]
    if bad:
        with writing(url) as session:
            quarantine(session, [r for _, r in bad], now, max_bytes)
        unprocessable(
            [
                {
                    "index": i,
                    "transaction_id": r.transaction_id,
                    "field": e.field,
                    "problem": e.problem,
                }
                for i, r in bad
                for e in r.errors
            ]
        )
    with writing(url) as session:
        result = record_chargebacks(
            session, records, now, "api", f"api:{principal.name}", max_bytes
        )
    return ChargebacksRecorded(
        recorded=result.recorded,
        repeated=result.repeated,
        quarantined=[
            Quarantined(transaction_id=r.transaction_id, field=r.field, problem=r.problem)
            for r in result.quarantined
        ],
    )
