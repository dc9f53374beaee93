"""Record the chargebacks that have arrived: the delayed labels that retraining also learns from."""

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import flow

from flows.runtime import runtime
from fraudloop import labels
from fraudloop.simulator import chargeback_labels
from fraudloop.storage import open_session


def arrived_chargebacks(
    source: Path, delay_days: int, now: datetime, since: datetime | None
) -> pd.DataFrame:
    """Label events from the source's ground truth that became known in [since, now)."""
    delay = pd.Timedelta(days=delay_days)
    window = [("tx_datetime", "<", pd.Timestamp(now) - delay)]
    if since is not None:
        window.append(("tx_datetime", ">=", pd.Timestamp(since) - delay))
    truth = pd.read_parquet(
        source, columns=["transaction_id", "tx_datetime", "is_fraud"], filters=window
    )
    return chargeback_labels(truth, delay_days)


@flow(name="chargebacks")
def chargeback_flow(
    source: Path, now: datetime | None = None, since: datetime | None = None
) -> int:
    """Idempotent: labels already recorded are skipped. Returns how many are new."""
    rt = runtime()
    now = now or datetime.now(UTC).replace(tzinfo=None)
    events = arrived_chargebacks(source, rt.policy.learning.chargeback_delay_days, now, since)
    events["actor"] = "chargeback-feed"
    with open_session(rt.db_url) as s, s.begin():
        return labels.add_labels(s, events.to_dict("records"))
