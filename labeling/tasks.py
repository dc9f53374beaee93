"""Turn review cases into Label Studio tasks and push them, once each, in micro-batches.

Everything is keyed on fraudloop's case_id: Label Studio reuses task ids after deletes, so its
ids are only ever a lookup result, never an identity.
"""

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from fraudloop.errors import FraudloopError
from fraudloop.policy import queue_priority
from fraudloop.redaction import find_sensitive
from labeling.client import LabelStudioClient
from labeling.label_config import rationale_prompt

_SIMILAR_COLUMNS = {
    "when": "when",
    "amount": "amount",
    "score": "score",
    "same_customer": "same customer",
    "same_terminal": "same terminal",
    "disposition": "decided",
}
NO_NOTES = "No notes yet."
LOOKUP_CHUNK = 100  # case ids per lookup: the query rides in the URL, which must stay < 16 kB


class ReviewCase(BaseModel):
    """What a reviewer needs for one case; `snapshot` is already redacted by fraudloop.redaction."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    case_id: str
    transaction_id: str
    snapshot: dict[str, Any]
    score: float
    recommendation: str
    reasons: list[str]
    model_version: str
    sla_due_at: datetime
    queue: str = ""
    priority: float | None = None  # the store's, aged as the case waits; else score x amount
    similar: list[dict[str, Any]] = []
    notice: str = ""
    selection_reason: str = ""  # an active-learning pick: why it was chosen (`pipeline.selection`)

    @field_validator("reasons", mode="before")
    @classmethod
    def _reason_texts(cls, value: Iterable[Any]) -> list[str]:
        """Accept the scoring contract's reason dicts or plain texts."""
        return [r["text"] if isinstance(r, Mapping) else str(r) for r in value]

    @property
    def amount(self) -> float:
        return float(self.snapshot.get("amount") or 0.0)


def build_task(case: Mapping[str, Any]) -> dict[str, Any]:
    """The task a reviewer sees; every shown value comes from the redacted snapshot and scores."""
    c = ReviewCase.model_validate(case)
    due = as_utc(c.sla_due_at)
    rank = queue_priority(c.score, c.amount) if c.priority is None else c.priority
    data = {
        "case_id": c.case_id,
        "transaction_id": c.transaction_id,
        "score": round(c.score, 4),
        "recommendation": c.recommendation,
        "model_version": c.model_version,
        "sla_due_at": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "priority": rank,
        "headline": f"Case {c.case_id} · SLA due {due:%Y-%m-%d %H:%M} UTC "
        f"· model {c.model_version}",
        "notice": _notice(c),
        "selection_reason": c.selection_reason,
        "summary": f"Model recommends {c.recommendation.upper()}: "
        f"fraud probability {c.score:.1%}, priority {rank:,.2f}",
        "reasons": "\n".join(f"{i}. {text}" for i, text in enumerate(c.reasons, 1)),
        "transaction": {k: _text(v) for k, v in c.snapshot.items()},
        "rationale_prompt": rationale_prompt(c.recommendation),
        "similar_html": similar_html(c.similar),
        "reviewer_notes": NO_NOTES,  # `annotate` notes arrive later, through labeling.review.answers
    }
    _refuse_sensitive(c.case_id, data)
    return {"data": data}


def _notice(c: ReviewCase) -> str:
    """What the reviewer must know first; for a pick, that the answer is a label only."""
    if not c.selection_reason:
        return c.notice
    decided = {"approve": "approved", "reject": "blocked"}.get(c.recommendation, c.recommendation)
    learning = (
        f"Chosen to teach the model, already {decided} automatically: your answer is a label "
        f"and changes no decision. Why this case: {c.selection_reason}"
    )
    return f"{c.notice} · {learning}" if c.notice else learning


def push_tasks(
    client: LabelStudioClient, project_id: int, cases: Sequence[Mapping[str, Any]]
) -> dict[str, int]:
    """Import cases not yet in the project in one request; returns case_id -> task id for all.

    Safe to retry: cases already present (by data.case_id) are not imported again.
    """
    tasks = {t["data"]["case_id"]: t for t in map(build_task, cases)}
    found = find_tasks(client, project_id, list(tasks))
    new = [task for case_id, task in tasks.items() if case_id not in found]
    if not new:
        return found
    response = client.request(
        "POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"}, json=new
    ).json()
    task_ids = response.get("task_ids", [])
    if len(task_ids) != len(new):
        raise FraudloopError(
            f"Label Studio project {project_id} created {len(task_ids)} of {len(new)} tasks; "
            "check its log, then push again (already imported cases are skipped)"
        )
    # bulk import keeps the request order, so ids pair up with the cases we sent
    return found | {task["data"]["case_id"]: tid for task, tid in zip(new, task_ids, strict=True)}


def find_tasks(
    client: LabelStudioClient, project_id: int, case_ids: Sequence[str]
) -> dict[str, int]:
    """case_id -> task id for those of `case_ids` already in the project."""
    found: dict[str, int] = {}
    for start in range(0, len(case_ids), LOOKUP_CHUNK):
        chunk = case_ids[start : start + LOOKUP_CHUNK]
        item = {
            "filter": "filter:tasks:data.case_id",
            "operator": "in_list",
            "type": "String",
            "value": list(chunk),
        }
        query = {"filters": {"conjunction": "and", "items": [item]}}
        params = {
            "project": project_id,
            "query": json.dumps(query),
            "page_size": len(chunk) * 2,  # room for duplicates made outside fraudloop
        }
        for task in client.request("GET", "/api/tasks", params=params).json()["tasks"]:
            found.setdefault(task["data"]["case_id"], task["id"])
    return found


def _refuse_sensitive(case_id: str, data: Mapping[str, Any]) -> None:
    """Defence in depth behind redact(): never ship anything that looks like raw PII."""
    fields = {
        f"{key}.{sub}" if isinstance(value, Mapping) else key: v
        for key, value in data.items()
        for sub, v in (value.items() if isinstance(value, Mapping) else [(key, value)])
    }
    leaks = [name for name, value in fields.items() if find_sensitive(str(value))]
    if leaks:
        raise FraudloopError(
            f"case {case_id}: field(s) {', '.join(leaks)} look like a raw card number, e-mail or "
            "IP address; pass the transaction through fraudloop.redaction.redact first"
        )


def similar_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """Past reviewed cases as a small HTML table (Label Studio's inline HyperText)."""
    if not rows:
        return "<p>No similar reviewed cases yet.</p>"
    head = "".join(f"<th>{html.escape(title)}</th>" for title in _SIMILAR_COLUMNS.values())
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_cell(row.get(key)))}</td>" for key in _SIMILAR_COLUMNS)
        + "</tr>"
        for row in rows
    )
    return f'<table class="similar-cases"><tr>{head}</tr>{body}</table>'


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}" if value >= 1 else f"{value:.3f}"
    return _text(value)


def _text(value: Any) -> str:
    """Table cells must be strings (Label Studio shows booleans and null as blank)."""
    return "—" if value is None else str(value)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are UTC by the data contract; Label Studio wants explicit UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
