"""Read reviewers' annotations back from Label Studio and turn them into validated outcomes.

Label Studio checks nothing (a missing rationale or an unknown choice is saved), so every record
goes through `parse_outcome` before it may become a decision. Webhooks are best effort (1 s
timeout, no retry); this pull is the reconciliation pass that makes the loop reliable.
"""

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from fraudloop.errors import ServiceUnavailable
from labeling.client import LabelStudioClient
from labeling.label_config import (
    ReviewOutcome,
    ValidationProblem,
    chosen,
    rationale_text,
    validate_annotation,
)
from labeling.tasks import as_utc

PAGE_SIZE = 1000
EXPORT_CHUNK = 500  # task ids per export request (they ride in the URL)


class AnnotationRecord(BaseModel):
    """One submitted (not skipped) annotation, keyed on fraudloop's case_id."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    ls_task_id: int
    annotation_id: int
    decision: str | None  # the raw choice; several or none show up as a validation problem
    rationale: str | None
    reviewer: str  # Label Studio user e-mail, or its numeric id if the user is unknown
    created_at: datetime
    updated_at: datetime
    lead_time: float | None  # seconds the reviewer spent, as measured by the UI
    result: list[dict[str, Any]]
    task_updated_at: datetime | None = None  # the task's change stamp, which the sync filters on


def fetch_annotations(
    client: LabelStudioClient, project_id: int, since: datetime | None = None
) -> list[AnnotationRecord]:
    """Annotations created or edited after `since` (all when None), oldest change first.

    Pass the largest `updated_at` already seen as the next `since`: it is the server's clock,
    so no change falls between two syncs. Naive datetimes are taken as UTC. With `since`, only
    the tasks changed after it are read (a Data Manager query on `updated_at`, which an edited
    annotation moves too): a sync when nothing changed costs one request per queue.
    """
    if since is None:
        tasks = _export(client, project_id, {})
    else:
        ids = list(_updated_task_ids(client, project_id, since))
        tasks = [
            task
            for start in range(0, len(ids), EXPORT_CHUNK)
            for task in _export(client, project_id, {"ids[]": ids[start : start + EXPORT_CHUNK]})
        ]
    if not tasks:
        return []  # nothing changed: no need to ask who the users are
    emails = user_emails(client)
    records = [
        annotation_record(task, annotation, emails)
        for task in tasks
        for annotation in task.get("annotations", [])
        if not annotation.get("was_cancelled")
    ]
    if since is not None:
        records = [r for r in records if r.updated_at > as_utc(since)]
    return sorted(records, key=lambda r: (r.updated_at, r.annotation_id))


def server_now(client: LabelStudioClient) -> datetime:
    """Label Studio's clock (the `Date` of a health check, to the second, naive UTC): the
    watermark of a queue a pass found nothing in, so the next pass need not read it all."""
    stamp = client.request("GET", "/health").headers.get("Date")
    if stamp is None:
        raise ServiceUnavailable(f"Label Studio at {client.url} sent no Date header")
    return parsedate_to_datetime(stamp).astimezone(UTC).replace(tzinfo=None)


def parse_outcome(
    record: AnnotationRecord, recommendation: str
) -> ReviewOutcome | ValidationProblem:
    """The reviewer's decision, or why it cannot count (the same rules as the review screen)."""
    return validate_annotation(record.result, recommendation)


def _updated_task_ids(client: LabelStudioClient, project_id: int, since: datetime) -> Iterator[int]:
    """Annotated tasks changed after `since`: a Data Manager query, far cheaper than an export."""
    stamp = as_utc(since).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the filter needs `Z`; +00:00 is a 500
    query = {
        "filters": {
            "conjunction": "and",
            "items": [
                _filter("updated_at", "greater", "Datetime", stamp),
                _filter("total_annotations", "greater", "Number", 0),
            ],
        },
        "ordering": ["tasks:id"],
    }
    page, seen = 1, 0
    while True:
        params = {"project": project_id, "query": json.dumps(query), "page": page}
        body = client.request("GET", "/api/tasks", params={**params, "page_size": PAGE_SIZE}).json()
        for task in body["tasks"]:
            yield task["id"]
        seen += len(body["tasks"])
        if not body["tasks"] or seen >= body["total"]:
            return
        page += 1  # asking past the last page is a 404, hence the count


def _export(
    client: LabelStudioClient, project_id: int, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Annotated tasks in Label Studio's JSON export format."""
    response = client.request(
        "GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON", **params}
    )
    return response.json()


def user_emails(client: LabelStudioClient) -> dict[int, str]:
    """Label Studio user id -> e-mail: annotations name their author by id only."""
    return {u["id"]: u["email"] for u in client.request("GET", "/api/users/").json()}


def annotation_record(
    task: Mapping[str, Any], annotation: Mapping[str, Any], emails: Mapping[int, str]
) -> AnnotationRecord:
    result = annotation.get("result") or []
    choices = chosen(result)
    user = annotation.get("completed_by")
    user_id = user.get("id") if isinstance(user, Mapping) else user  # some exports expand it
    return AnnotationRecord(
        case_id=task["data"]["case_id"],
        ls_task_id=task["id"],
        annotation_id=annotation["id"],
        decision=choices[0] if len(choices) == 1 else None,
        rationale=rationale_text(result),
        reviewer=emails.get(user_id, str(user_id)) if isinstance(user_id, int) else str(user_id),
        created_at=annotation["created_at"],
        updated_at=annotation["updated_at"],
        lead_time=annotation.get("lead_time"),
        result=list(result),
        task_updated_at=task.get("updated_at"),
    )


def _filter(field: str, operator: str, kind: str, value: Any) -> dict[str, Any]:
    return {"filter": f"filter:tasks:{field}", "operator": operator, "type": kind, "value": value}
