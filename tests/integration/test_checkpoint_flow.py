"""The scheduled checkpoint: a real Prefect flow run signs the chain, the next run with nothing
new signs nothing, and a run over a rewritten chain fails instead of signing it."""

from datetime import datetime
from pathlib import Path

import pytest
from audit_tamper import tamper
from sqlalchemy.orm import Session

from fraudloop import audit, checkpoints
from fraudloop.settings import get_settings
from fraudloop.storage import make_engine, migrate

pytestmark = pytest.mark.integration


def test_the_checkpoint_flow_signs_and_refuses_a_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.checkpoint import checkpoint_flow

    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("FRAUDLOOP_HOME", str(home))
    monkeypatch.setenv("FRAUDLOOP_DB_URL", url)
    get_settings.cache_clear()
    try:
        migrate(url)
        events = [audit.event(f"k{i}", "alert", "monitor", datetime(2026, 3, 1)) for i in range(5)]
        with Session(make_engine(url)) as s, s.begin():
            audit.append(s, events)
        first = checkpoint_flow(now=datetime(2026, 3, 1, 12))
        assert first["n_events"] == 5 and Path(first["path"]).parent == home / "checkpoints"
        assert checkpoint_flow(now=datetime(2026, 3, 1, 13))["path"] == ""  # nothing new
        tamper(url, "DELETE FROM audit_events WHERE seq = 5")
        tamper(
            url,
            "UPDATE audit_chain_head SET n_events = 4, hash = (SELECT hash FROM "
            "audit_events WHERE seq = 4)",
        )
        state = checkpoint_flow(now=datetime(2026, 3, 1, 14), return_state=True)
        assert state.is_failed()
        assert len(list((home / "checkpoints").glob("*.json"))) == 1
        key = checkpoints.load_public_key(checkpoints.public_key_path(home / checkpoints.KEY_FILE))
        with Session(make_engine(url)) as s:
            result = checkpoints.verify(s, home / "checkpoints", key)
        assert "truncated" in {f.kind for f in result.findings}
    finally:
        get_settings.cache_clear()
