"""One Label Studio project per review queue, created or brought up to date on every run."""

from collections.abc import Mapping

from label_studio_sdk.types import AllRolesProjectList

from labeling.client import LabelStudioClient, LabelStudioError
from labeling.label_config import LABEL_CONFIG

PRIORITY_VIEW = "By priority"
PRIORITY_ORDERING = ["-tasks:data.priority"]  # numeric data fields sort numerically
# A case that left its queue (escalated, superseded) gets `data.closed`; open ones have no such
# field, which the Data Manager counts as empty, so tasks imported before tiers stay visible.
OPEN_FILTER = {
    "conjunction": "and",
    "items": [
        {"filter": "filter:tasks:data.closed", "operator": "empty", "type": "String", "value": True}
    ],
}


def project_title(queue: str, title_prefix: str = "fraudloop") -> str:
    return f"{title_prefix} {queue}"


def ensure_projects(
    client: LabelStudioClient,
    queues: list[str],
    title_prefix: str = "fraudloop",
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """queue -> project id; creates missing projects, updates a changed config or description.

    Projects are found by exact title, so running this twice (or after a restart) is harmless.
    """
    descriptions = descriptions or {}
    found: list[AllRolesProjectList] = list(
        client.sdk.projects.list(title=title_prefix, page_size=100)
    )
    by_title = {p.title: p for p in found}
    ids: dict[str, int] = {}
    for queue in queues:
        title = project_title(queue, title_prefix)
        description = descriptions.get(queue) or f"fraudloop review queue {queue!r}"
        ids[queue] = _ensure_project(client, title, description, by_title.get(title))
        ensure_priority_view(client, ids[queue])
    return ids


def _ensure_project(
    client: LabelStudioClient,
    title: str,
    description: str,
    existing: AllRolesProjectList | None,
) -> int:
    description = f"{description}; tasks are pushed by fraudloop"
    if existing is None:
        created = client.sdk.projects.create(
            title=title, description=description, label_config=LABEL_CONFIG
        )
        return _stored_id(created.id)
    if (existing.label_config or "").strip() != LABEL_CONFIG.strip():
        client.sdk.projects.update(id=_stored_id(existing.id), label_config=LABEL_CONFIG)
    if existing.description != description:
        client.sdk.projects.update(id=_stored_id(existing.id), description=description)
    return _stored_id(existing.id)


def ensure_priority_view(client: LabelStudioClient, project_id: int) -> int:
    """The Data Manager tab that orders work by business impact; the labeling stream follows it.

    Send reviewers to `review_url(...)` so they label in this order rather than import order.
    """
    data = {"title": PRIORITY_VIEW, "ordering": PRIORITY_ORDERING, "filters": OPEN_FILTER}
    for view in client.sdk.views.list(project=project_id):
        if (view.data or {}).get("title") == PRIORITY_VIEW:
            current = {k: view.data.get(k) for k in ("ordering", "filters")}
            if current != {"ordering": PRIORITY_ORDERING, "filters": OPEN_FILTER}:
                client.sdk.views.update(str(view.id), project=project_id, data=data)
            return _stored_id(view.id)
    return _stored_id(client.sdk.views.create(project=project_id, data=data).id)


def review_url(base_url: str, project_id: int, view_id: int) -> str:
    """Where a reviewer starts labeling, in priority order."""
    return f"{base_url.rstrip('/')}/projects/{project_id}/data?tab={view_id}&labeling=1"


def _stored_id(value: int | None) -> int:
    """The SDK types ids as optional; a stored object without one means a broken server."""
    if value is None:
        raise LabelStudioError("Label Studio returned a stored object without an id", 502)
    return value


def delete_projects(client: LabelStudioClient, title_prefix: str = "fraudloop") -> int:
    """Remove fraudloop's queues (a fresh demo starts from empty queues); returns how many."""
    found: list[AllRolesProjectList] = list(
        client.sdk.projects.list(title=title_prefix, page_size=100)
    )
    doomed = [p for p in found if (p.title or "").startswith(title_prefix)]
    for project in doomed:
        client.sdk.projects.delete(id=_stored_id(project.id))
    return len(doomed)
