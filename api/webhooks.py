"""Label Studio webhooks: a reviewer's answer reaches the decision store within a second.

Label Studio calls this inside the reviewer's own request (1 s timeout, no retry, no signature),
so the handler checks the shared secret (refusing to work at all with a missing or default one),
reads the named annotation back from Label Studio (the payload is a hint, never the truth),
applies it through the same path as the reconciliation pass (`labeling.reconcile.apply_annotation`:
idempotent, validated, audited) and answers at once; telling Label Studio about a returned or
closed task happens after the response. A webhook that never arrives is picked up by
`fraudloop sync`.
"""

import hmac
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, HTTPException, Request
from sqlalchemy import select

from fraudloop import credentials
from fraudloop.clock import utcnow
from fraudloop.errors import ServiceUnavailable
from fraudloop.policy import Policy, load_policy
from fraudloop.settings import Settings
from fraudloop.storage import Reviewer, migrate, open_session
from labeling.client import LabelStudioClient, LabelStudioError, connect
from labeling.escalation import push_patches
from labeling.reconcile import apply_annotation
from labeling.sync import user_emails
from labeling.webhook import answer_record, author_id, hinted_annotation, reread

router = APIRouter(tags=["labeling"])
_COMMIT_GRACE_SECONDS = 2.0


@dataclass
class _Context:
    """What the handler needs, built on first use (nothing happens when the app is created)."""

    settings: Settings

    @cached_property
    def policy(self) -> Policy:
        return load_policy(self.settings.policy_file)

    @cached_property
    def db_url(self) -> str:
        migrate(self.settings.database_url)
        return self.settings.database_url

    @cached_property
    def client(self) -> LabelStudioClient:
        return connect(self.settings.labelstudio_url, self.settings.labelstudio_token, timeout=10)

    @cached_property
    def emails(self) -> dict[int, str]:
        return {}


def _context(request: Request) -> _Context:
    state = request.app.state
    if getattr(state, "labelstudio_webhook", None) is None:
        state.labelstudio_webhook = _Context(state.settings)
    return state.labelstudio_webhook


@router.post("/v1/webhooks/labelstudio")
def labelstudio_webhook(
    payload: dict[str, Any],
    request: Request,
    background: BackgroundTasks,
    x_fraudloop_secret: Annotated[str | None, Header()] = None,
) -> dict[str, str]:
    """Apply the annotation a Label Studio webhook names; repeating a delivery changes nothing."""
    ctx = _context(request)
    _check_secret(ctx.settings.webhook_secret, x_fraudloop_secret)
    annotation_id = hinted_annotation(payload)
    if annotation_id is None:
        return {"outcome": "ignored"}
    try:
        found = reread(ctx.client, annotation_id)
    except ServiceUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "30"}) from exc
    except LabelStudioError as exc:
        raise HTTPException(502, f"reading annotation {annotation_id} back failed: {exc}") from exc
    if found is None:  # made up, or deleted since: the reconciliation pass has the real ones
        return {"outcome": "unknown_annotation"}
    task, annotation = found
    now = utcnow()
    with open_session(ctx.db_url) as session, session.begin():
        record = answer_record(task, annotation, _emails(ctx, session, author_id(annotation)))
        if record is None:
            return {"outcome": "ignored"}
        outcome = apply_annotation(session, record, now, ctx.policy)
    if outcome in ("invalid", "returned", "annotated", "escalated"):
        background.add_task(_mirror, ctx)
    return {"outcome": outcome, "case_id": record.case_id}


def _check_secret(expected: str, given: str | None) -> None:
    """503 while the install has no real secret (nothing can be trusted), 401 for a wrong one."""
    problem = credentials.problem("webhook_secret", expected)
    if problem is not None:
        raise HTTPException(503, f"webhooks are refused: {problem}; run `fraudloop up`")
    if not hmac.compare_digest((given or "").encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong X-Fraudloop-Secret header")


def _emails(ctx: _Context, session: Any, user_id: int | None) -> dict[int, str]:
    """Author e-mails: fraudloop's reviewers first, Label Studio's user list for the others."""
    if user_id is None or user_id in ctx.emails:
        return ctx.emails
    known = session.execute(select(Reviewer.ls_user_id, Reviewer.email)).tuples()
    ctx.emails.update({uid: email for uid, email in known if uid is not None})
    if user_id not in ctx.emails:
        try:
            ctx.emails.update(user_emails(ctx.client))
        except ServiceUnavailable as exc:  # Label Studio answers our webhook, so rarely
            raise HTTPException(status_code=503, detail=str(exc)) from exc
    return ctx.emails


def _mirror(ctx: _Context) -> None:
    """After the response: Label Studio commits the annotation only once our answer is back, and
    deleting it earlier would find nothing (a 404 counts as done), so give it a moment."""
    time.sleep(_COMMIT_GRACE_SECONDS)
    with open_session(ctx.db_url) as session, session.begin():
        push_patches(session, ctx.client)
