"""Mirror the store's tier decisions to Label Studio: close, return and re-rank tasks.

`labeling.review` decides (escalate, return an invalid answer to the queue, age a priority) and
leaves an `ls_patch` on the case; this module applies it. The server only gets told after the
store committed, so an outage delays the mirror and never loses or doubles a decision.

Returning a task deletes the answer that did not count (Label Studio would otherwise treat the
task as done and take it out of the labeling stream) and shows the reason in `data.notice`;
the answer itself is kept in fraudloop's audit trail. Closing sets `data.closed`, which the
"By priority" view filters out.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fraudloop.errors import ServiceUnavailable
from fraudloop.storage import ReviewTask
from labeling.client import LabelStudioClient, LabelStudioError


@dataclass
class PatchResult:
    patched: int = 0
    annotations_deleted: int = 0
    pending: int = 0
    error: str | None = None


def push_patches(session: Session, client: LabelStudioClient, limit: int = 10_000) -> PatchResult:
    """Apply pending `ls_patch`es, most urgent first; stops at the first outage (kept for later)."""
    result = PatchResult()
    tasks = list(
        session.scalars(
            select(ReviewTask)
            .where(ReviewTask.ls_patch.is_not(None), ReviewTask.ls_task_id.is_not(None))
            .order_by(ReviewTask.sla_due_at)
            .limit(limit)
        )
    )
    for i, task in enumerate(tasks):
        try:
            result.annotations_deleted += apply_patch(client, task.ls_task_id or 0, task.ls_patch)
        except ServiceUnavailable as exc:
            result.error, result.pending = str(exc), len(tasks) - i
            return result
        task.ls_patch = None
        result.patched += 1
    return result


def apply_patch(client: LabelStudioClient, task_id: int, patch: dict[str, Any] | None) -> int:
    """Delete the listed annotations and merge `data` into the task; returns deletions made.

    Safe to repeat: an annotation already gone is skipped, and the merge is a plain overwrite.
    """
    patch = patch or {}
    deleted = 0
    for annotation_id in patch.get("delete_annotations", []):
        try:
            client.request("DELETE", f"/api/annotations/{annotation_id}/")
            deleted += 1
        except LabelStudioError as exc:
            if exc.status_code != 404:  # noqa: PLR2004 - HTTP Not Found
                raise
    if patch.get("data"):
        try:
            task = client.request("GET", f"/api/tasks/{task_id}").json()
        except LabelStudioError as exc:
            if exc.status_code == 404:  # noqa: PLR2004 - HTTP Not Found
                return deleted  # the project was deleted: nothing left to mirror
            raise
        data = {**task["data"], **patch["data"]}
        client.request("PATCH", f"/api/tasks/{task_id}", json={"data": data})
    return deleted
