"""A signed checkpoint of the audit chain on the policy's schedule: `fraudloop audit checkpoint`,
unattended, so a truncation or a rewrite can only reach back to the last hour."""

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger

from flows.runtime import runtime
from fraudloop import checkpoints
from fraudloop.storage import open_session


@flow(name="audit-checkpoint")
def checkpoint_flow(now: datetime | None = None) -> dict[str, Any]:
    """Sign the chain as it stands, with the key in the state dir (made on first use); nothing
    new when no event came since the last checkpoint. A chain that no longer extends the last
    checkpoint fails the run, so the tampering shows where the schedules are watched."""
    rt = runtime()
    home = rt.settings.home
    key, _ = checkpoints.ensure_key(checkpoints.key_path(home))
    with open_session(rt.db_url) as s:
        cp, path = checkpoints.make(s, checkpoints.directory(home), key, now or rt.clock())
    get_run_logger().info(
        "audit checkpoint: %d events, Merkle root %s -> %s",
        cp.n_events,
        cp.merkle_root,
        path or "unchanged since the last one",
    )
    return {"n_events": cp.n_events, "merkle_root": cp.merkle_root, "path": str(path or "")}
