"""The intake flows: new files in the landing folders, each read once (`fraudloop.intake`).

`score-intake` scores transaction files in micro-batches of `FRAUDLOOP_SCORE_CHUNK_ROWS`, each
chunk with its watermark in one transaction, then hands reviews to Label Studio;
`chargeback-intake` records chargeback files. Both are scheduled deployments
(`flows.deployments`) and run by hand with `fraudloop run NAME`.
"""

from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from flows.runtime import Runtime, runtime
from fraudloop import intake
from fraudloop.decisions import quarantine
from fraudloop.schema import Rejection
from fraudloop.storage import open_session

if TYPE_CHECKING:  # the model stack (xgboost, MLflow) loads only when a file is there to score
    from models.scoring import ScoringModel
    from pipeline.decide import BatchResult

CHARGEBACK_INTAKE_ACTOR = "chargeback-intake"
T = TypeVar("T")


@task(cache_policy=NO_CACHE)
def take_files(rt: Runtime, kind: str, now: datetime) -> list[intake.Claim]:
    """The files of a landing folder still to read, oldest first, each from its watermark."""
    folder = (
        rt.settings.transactions_landing
        if kind == intake.TRANSACTIONS
        else rt.settings.chargebacks_landing
    )
    folder.mkdir(parents=True, exist_ok=True)
    with open_session(rt.db_url) as s:
        files = intake.unseen(s, kind, intake.landed(folder, rt.policy.intake.settle_seconds))
    claims = []
    for file in files:
        try:
            with open_session(rt.db_url) as s, s.begin():
                claim = intake.take(s, kind, file, now, rt.policy.limits.quarantine_record_bytes)
        except FileNotFoundError:  # moved away since it was listed
            continue
        if claim is not None:
            claims.append(claim)
    return claims


def _each_chunk(
    rt: Runtime,
    claim: intake.Claim,
    now: datetime,
    apply: Callable[[Session, list[dict[str, Any]]], T],
) -> Iterator[tuple[T, list[Rejection]]]:
    """`apply` to a file chunk by chunk from its watermark; each chunk's work, quarantined
    lines and watermark commit together, so a crash loses at most the chunk in flight. Stops
    when another run has taken the file."""
    max_bytes = rt.policy.limits.quarantine_record_bytes
    for start, end in claim.chunks(rt.settings.score_chunk_rows):
        records, unreadable = intake.split(claim.rows[start:end])
        try:
            with open_session(rt.db_url) as s, s.begin():
                intake.advance(s, claim, start, end, now)
                quarantine(s, unreadable, now, max_bytes)
                done = apply(s, records)
        except intake.Taken as exc:
            get_run_logger().warning("%s", exc)
            return
        yield done, unreadable


@task(cache_policy=NO_CACHE)
def score_file(
    rt: Runtime, claim: intake.Claim, model: "ScoringModel | None", now: datetime
) -> "BatchResult":
    """Score a file from its watermark (`_each_chunk`), the chunks one run of history."""
    from pipeline.decide import BatchResult, score_batch
    from pipeline.features import RunHistory

    run = RunHistory()
    chunks = list(
        _each_chunk(rt, claim, now, lambda s, r: score_batch(s, r, model, rt.policy, now, run))
    )
    unread = sum(len(unreadable) for _, unreadable in chunks)
    return BatchResult.total([*(done for done, _ in chunks), BatchResult(0, 0, unread, False)])


@task(cache_policy=NO_CACHE)
def chargeback_file(rt: Runtime, claim: intake.Claim, now: datetime) -> intake.ChargebackResult:
    """Record a chargeback file from its watermark (`_each_chunk`), as `score_file` scores."""
    max_bytes = rt.policy.limits.quarantine_record_bytes
    total = intake.ChargebackResult()
    for done, unreadable in _each_chunk(
        rt,
        claim,
        now,
        lambda s, r: intake.record_chargebacks(
            s, r, now, claim.name, CHARGEBACK_INTAKE_ACTOR, max_bytes
        ),
    ):
        total.recorded += done.recorded
        total.repeated += done.repeated
        total.quarantined += unreadable + done.quarantined
    return total


def _model(rt: Runtime) -> "ScoringModel | None":
    from flows.champion import champion

    try:
        return champion(rt)
    except Exception as exc:  # registry down or no champion: decisions go on under fallback rules
        get_run_logger().error("model unavailable, deciding with fallback rules: %s", exc)
        return None


@flow(name="score-intake")
def score_intake_flow(now: datetime | None = None) -> dict[str, Any]:
    """Score the new files of the transactions landing folder, each once; a file a crashed run
    left halfway is finished from its watermark. No new file: nothing else is done."""
    rt = runtime()
    now = now or rt.clock()
    claims = take_files(rt, intake.TRANSACTIONS, now)
    if not claims:
        return {"files": [], "scored": 0, "new_decisions": 0, "rejected": 0}
    from flows.delivery import deliver_reviews
    from pipeline.decide import BatchResult

    model = _model(rt)
    results = {c.name: score_file(rt, c, model, now) for c in claims}
    result = BatchResult.total(list(results.values()))
    if result.rejected:
        get_run_logger().warning("quarantined %d malformed transaction(s)", result.rejected)
    delivery = deliver_reviews(rt, now)
    summary = {
        "files": list(results),
        **asdict(result),
        "delivered": delivery.delivered,
        "outbox_error": delivery.error,
    }
    get_run_logger().info("scored: %s", summary)
    return summary


@flow(name="chargeback-intake")
def chargeback_intake_flow(now: datetime | None = None) -> dict[str, Any]:
    """Record the new files of the chargebacks landing folder, each once: a label and an audit
    event per chargeback; one for an unknown transaction is quarantined with the reason."""
    rt = runtime()
    now = now or rt.clock()
    claims = take_files(rt, intake.CHARGEBACKS, now)
    results = [chargeback_file(rt, c, now) for c in claims]
    quarantined = sum(len(r.quarantined) for r in results)
    if quarantined:
        get_run_logger().warning("quarantined %d chargeback(s)", quarantined)
    return {
        "files": [c.name for c in claims],
        "recorded": sum(r.recorded for r in results),
        "repeated": sum(r.repeated for r in results),
        "quarantined": quarantined,
    }
