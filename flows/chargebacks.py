"""Record the chargebacks that have arrived: the delayed labels that retraining also learns from."""

from datetime import datetime
from pathlib import Path

from prefect import flow

from flows.runtime import runtime
from fraudloop import feed, labels
from fraudloop.storage import open_session


@flow(name="chargebacks")
def chargeback_flow(
    feed_path: Path, now: datetime | None = None, since: datetime | None = None
) -> int:
    """Label events of the chargeback feed known in [since, now); idempotent: labels already
    recorded are skipped. Returns how many are new."""
    rt = runtime()
    events = feed.read_labels(feed_path, now or rt.clock(), since)
    with open_session(rt.db_url) as s, s.begin():
        return labels.add_labels(s, events.assign(actor=labels.CHARGEBACK_ACTOR).to_dict("records"))
