"""Faults a real feed sends now and then, injected into the simulated one (demo and tests)."""

from typing import Any

import numpy as np


def inject_malformed(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """Corrupt copies of a few records (what a real feed sends now and then), for the demo."""
    if not records or n <= 0:
        return records
    rng = np.random.default_rng(seed)
    faults = [
        lambda r: {k: v for k, v in r.items() if k != "terminal_id"},
        lambda r: {**r, "amount": -abs(r["amount"]) - 1},
        lambda r: {**r, "amount": str(r["amount"])},
        lambda r: {**r, "merchant_note": "unexpected"},
    ]
    bad = []
    for i in range(n):
        base = records[int(rng.integers(len(records)))]
        bad.append(
            faults[i % len(faults)]({**base, "transaction_id": f"{base['transaction_id']}-bad{i}"})
        )
    return records + bad
