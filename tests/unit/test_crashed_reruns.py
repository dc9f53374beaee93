"""A crashed `score-batch` run is run again with its own parameters and one more rerun
counted (the template rendered by Prefect's own sandbox, as its automation renders it), and
a run past the policy's limit fails at once instead of scoring."""

import json
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import pytest
from prefect.server.schemas.core import FlowRun
from prefect.server.utilities.user_templates import render_user_template_sync

from flows.profile import RERUN
from flows.score import score_flow
from fraudloop.errors import FraudloopError
from fraudloop.policy import load_policy
from fraudloop.settings import PACKAGE_DIR, get_settings


def _again(parameters: dict[str, object]) -> dict[str, object]:
    run = FlowRun(flow_id=uuid4(), parameters=parameters)
    loaded: dict[str, object] = json.loads(render_user_template_sync(RERUN, {"flow_run": run}))
    return loaded


def test_each_rerun_keeps_the_parameters_and_counts_one_more() -> None:
    first = {"source": "/data/window.parquet", "start": "2026-03-01T00:00:00", "workers": 2}
    once = _again(first)
    assert once == {**first, "reruns": 1}
    assert _again(once) == {**first, "reruns": 2}


def test_a_run_past_the_limit_fails_before_it_reads_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = load_policy(PACKAGE_DIR / "policy.yaml").schedules.crashed_reruns_max
    monkeypatch.setenv("FRAUDLOOP_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        with pytest.raises(FraudloopError, match="crashed_reruns_max allows"):
            score_flow.fn(
                tmp_path / "missing.parquet",
                datetime(2026, 3, 1),
                datetime(2026, 3, 2),
                reruns=limit + 1,
            )
        # at the limit it runs: it reads the window, here a file that is not there
        with pytest.raises(FraudloopError, match="no such file"):
            score_flow.fn(
                tmp_path / "missing.parquet",
                datetime(2026, 3, 1),
                datetime(2026, 3, 2),
                reruns=limit,
            )
    finally:
        get_settings.cache_clear()
