"""Request bodies as lists of JSON objects, with the 422 that names what was wrong."""

from typing import Any, NoReturn

from fastapi import HTTPException, status
from pydantic import BaseModel


def one_or_many(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body of one `model` object or a non-empty list of them (`json_records`)."""
    one = model.model_json_schema()
    many = {"type": "array", "items": one, "minItems": 1}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"anyOf": [one, many]}}},
        }
    }


def json_records(body: Any, max_batch: int, kind: str) -> list[dict[str, Any]]:
    """One object or a list of them (each a `kind`, at most `max_batch`), or a 422."""
    records = body if isinstance(body, list) else [body]
    if not records:
        unprocessable([{"field": "<body>", "problem": "empty batch"}])
    if len(records) > max_batch:
        unprocessable(
            [{"field": "<body>", "problem": f"{len(records)} {kind}s, at most {max_batch}"}]
        )
    bad = [
        {"index": i, "field": "<record>", "problem": f"must be a JSON object (a {kind})"}
        for i, record in enumerate(records)
        if not isinstance(record, dict)
    ]
    if bad:
        unprocessable(bad)
    return records


def unprocessable(problems: list[dict[str, Any]]) -> NoReturn:
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problems)
