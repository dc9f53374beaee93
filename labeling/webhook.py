"""Label Studio webhooks to fraudloop's API: registration and reading their payload.

Label Studio posts inside the reviewer's request with a 1 s timeout and never retries, and signs
nothing: a shared secret travels as a custom header, and the reconciliation pass
(`labeling.reconcile.sync_reviews`) picks up whatever a webhook missed.

A payload is a hint, never the truth: only the annotation id is taken from it, and the
annotation and its task are read back from Label Studio by that id (`reread`), so a forged
payload can at most point at an annotation that really exists.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from labeling.client import LabelStudioClient, LabelStudioError
from labeling.sync import AnnotationRecord, annotation_record

SECRET_HEADER = "X-Fraudloop-Secret"
ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]


def ensure_webhooks(
    client: LabelStudioClient, project_ids: Iterable[int], url: str, secret: str
) -> int:
    """One active webhook per project to `url`; creates or fixes them; returns how many changed."""
    changed = 0
    for project_id in project_ids:
        hooks = client.request("GET", "/api/webhooks/", params={"project": project_id}).json()
        wanted = {
            "project": project_id,
            "url": url,
            "send_payload": True,
            "send_for_all_actions": False,
            "actions": ACTIONS,
            "headers": {SECRET_HEADER: secret},
            "is_active": True,
        }
        mine = [h for h in hooks if h.get("url") == url]
        if not mine:
            client.request("POST", "/api/webhooks/", json=wanted)
            changed += 1
        elif any(mine[0].get(k) != v for k, v in wanted.items() if k != "actions") or sorted(
            mine[0].get("actions") or []
        ) != sorted(ACTIONS):
            client.request("PATCH", f"/api/webhooks/{mine[0]['id']}/", json=wanted)
            changed += 1
    return changed


def hinted_annotation(payload: Mapping[str, Any]) -> int | None:
    """The annotation id a webhook names, or None for events that are not a submitted answer
    (or payloads without a usable id)."""
    if payload.get("action") not in ACTIONS:
        return None
    annotation = payload.get("annotation")
    annotation_id = annotation.get("id") if isinstance(annotation, Mapping) else None
    if not isinstance(annotation_id, int) or isinstance(annotation_id, bool):
        return None
    return annotation_id if annotation_id > 0 else None


def reread(
    client: LabelStudioClient, annotation_id: int
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(task, annotation) as Label Studio holds them, or None if it has no such annotation."""
    try:
        annotation = client.request("GET", f"/api/annotations/{annotation_id}/").json()
        task = client.request("GET", f"/api/tasks/{annotation['task']}").json()
    except LabelStudioError as exc:
        if exc.status_code == 404:  # noqa: PLR2004 - HTTP Not Found
            return None
        raise
    return task, annotation


def answer_record(
    task: Mapping[str, Any], annotation: Mapping[str, Any], emails: Mapping[int, str]
) -> AnnotationRecord | None:
    """The answer an annotation gives, or None if it is cancelled or not on a fraudloop case."""
    if annotation.get("was_cancelled") or "case_id" not in (task.get("data") or {}):
        return None
    return annotation_record(task, annotation, emails)


def author_id(annotation: Mapping[str, Any]) -> int | None:
    """The numeric Label Studio user id of the annotation's author."""
    user = annotation.get("completed_by")
    user = user.get("id") if isinstance(user, Mapping) else user
    return user if isinstance(user, int) else None
