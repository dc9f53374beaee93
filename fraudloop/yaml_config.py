"""Versioned YAML files read into strict pydantic models (the policy, the model config)."""

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fraudloop.errors import FraudloopError

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path, model: type[M], what: str) -> M:
    """Read and validate `path` as `model`; errors name the file, every field and its problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise FraudloopError(f"{what} {path} not found") from exc
    except yaml.YAMLError as exc:
        raise FraudloopError(f"{what} {path} is not valid YAML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise FraudloopError(f"{what} {path} is invalid: {problems}") from exc
