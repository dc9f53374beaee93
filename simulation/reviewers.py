"""A simulated reviewer that works a queue through the Label Studio API, the way a person would.

It sees only what the UI shows (the task), posts the same result JSON the UI produces, and
knows the truth only through the simulator's `truth` map; an error rate makes it fallible.
"""

import json
import secrets
from collections.abc import Mapping
from typing import Any, Protocol

from labeling.client import LabelStudioClient
from labeling.label_config import DECISION, RATIONALE, TARGET, needs_rationale

_RATIONALES = {
    "approve": "Customer history and terminal look normal; confirmed as legitimate.",
    "reject": "Spending pattern matches a compromised card; treated as fraud.",
}


class Rng(Protocol):
    """What the simulator needs from `random.Random` or `numpy.random.Generator`."""

    def random(self) -> float: ...

    def uniform(self, low: float, high: float) -> float: ...


def review_pending(
    client: LabelStudioClient,
    project_id: int,
    truth: Mapping[str, bool | int],
    error_rate: float,
    rng: Rng,
    limit: int,
) -> int:
    """Annotate up to `limit` open tasks, highest priority first; returns how many were answered.

    Tasks whose case is not in `truth` are left for someone else.
    """
    if limit <= 0:
        return 0
    answered = 0
    for task in open_tasks(client, project_id, limit):
        case_id = task["data"]["case_id"]
        if case_id not in truth:
            continue
        choice = "reject" if truth[case_id] else "approve"
        if rng.random() < error_rate:
            choice = "approve" if choice == "reject" else "reject"
        client.sdk.annotations.create(
            id=task["id"],
            result=ui_result(choice, task["data"]["recommendation"]),
            lead_time=round(rng.uniform(5.0, 90.0), 1),
        )
        answered += 1
    return answered


def open_tasks(client: LabelStudioClient, project_id: int, limit: int) -> list[dict[str, Any]]:
    """Unannotated tasks in the order reviewers see them (highest priority first)."""
    query = {
        "filters": {
            "conjunction": "and",
            "items": [
                {
                    "filter": "filter:tasks:total_annotations",
                    "operator": "equal",
                    "type": "Number",
                    "value": 0,
                }
            ],
        },
        "ordering": ["-tasks:data.priority"],
    }
    params = {"project": project_id, "query": json.dumps(query), "page_size": limit}
    return client.request("GET", "/api/tasks", params=params).json()["tasks"]


def ui_result(choice: str, recommendation: str) -> list[dict[str, Any]]:
    """The `result` the labeling UI submits for this choice, with a rationale when one is due."""
    result = [_region(DECISION, "choices", {"choices": [choice]})]
    if needs_rationale(choice, recommendation):
        result.append(_region(RATIONALE, "textarea", {"text": [_RATIONALES[choice]]}))
    return result


def _region(from_name: str, kind: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": secrets.token_urlsafe(8)[:10],
        "from_name": from_name,
        "to_name": TARGET,
        "type": kind,
        "origin": "manual",
        "value": value,
    }
