"""A feed file that is not there is named in a user's error, not a traceback."""

from datetime import datetime
from pathlib import Path

import pytest

from fraudloop import feed
from fraudloop.errors import FraudloopError

WHEN = datetime(2018, 5, 1)


@pytest.mark.parametrize("name", ["tx.parquet", "drop.jsonl"])
def test_a_missing_transactions_file_is_named(tmp_path: Path, name: str) -> None:
    missing = tmp_path / name
    with pytest.raises(FraudloopError, match=f"transactions {missing}: no such file"):
        feed.read_window(missing, WHEN, WHEN)
    with pytest.raises(FraudloopError, match="no such file"):
        feed.read_history(missing, WHEN)


def test_a_missing_chargeback_feed_is_named(tmp_path: Path) -> None:
    with pytest.raises(FraudloopError, match="chargeback feed .*: no such file"):
        feed.read_labels(tmp_path / "labels.parquet", WHEN)
