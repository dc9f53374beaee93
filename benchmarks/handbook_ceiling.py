"""Upper bounds of CP@100 on the handbook protocol: what an oracle could reach.

`python -m benchmarks.handbook_ceiling [--data PATH] [--train-start 2018-07-25] [--shifts 0 7]`

CP@100 divides each day's hits by 100, and a customer found once leaves the later days, so a
model can never score above (compromised customers not yet found that day) / 100. Two oracles on
the protocol's test set (customers known compromised already removed, see `test_rows`):

- full: knows every test label;
- revealable: knows only the frauds that the protocol's information could reveal at the
  transaction's time — amounts above 220 (scenario 1) and a compromised customer's inflated
  amounts (scenario 3) are visible in the transaction itself; a compromised terminal
  (scenario 2) only once one of its frauds of the current compromise (the last 28 days) is
  older than the label delay, because labels arrive `delay_days` after the transaction.

The scenario column is ground truth about how a fraud was made: used here to bound, never as a
model feature.
"""

import argparse
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.handbook import CP_K, Window, test_rows
from models.evaluate import card_precision_top_k
from simulation.world import load_handbook

# the shared data set beside the repo (../shared/data), as the README's `bench handbook` reads it
DATA = Path(__file__).resolve().parents[2] / "shared/data/handbook-2018-04-01_2018-08-31.parquet"
TERMINAL_COMPROMISE_DAYS = 28  # the simulator's scenario 2 duration
COMPROMISED_TERMINAL = 2  # its `fraud_scenario` (docs/DESIGN.md, data contracts)


def revealable(tx: pd.DataFrame, test: pd.DataFrame, delay_days: int) -> np.ndarray:
    """Per test row: a fraud the protocol's information could reveal at its time."""
    fraud, scenario = test["is_fraud"].to_numpy() == 1, test["fraud_scenario"].to_numpy()
    seen = fraud & (scenario != COMPROMISED_TERMINAL)
    terminal_frauds = tx.loc[
        tx["fraud_scenario"] == COMPROMISED_TERMINAL, ["terminal_id", "tx_datetime"]
    ]
    queries = test.loc[
        fraud & (scenario == COMPROMISED_TERMINAL), ["terminal_id", "tx_datetime"]
    ].copy()
    queries["known_until"] = queries["tx_datetime"] - timedelta(days=delay_days)
    latest_known = pd.merge_asof(
        queries.reset_index().sort_values("known_until"),
        terminal_frauds.rename(columns={"tx_datetime": "latest_known"}).sort_values("latest_known"),
        left_on="known_until",
        right_on="latest_known",
        by="terminal_id",
        direction="backward",
    ).set_index("index")
    started = latest_known["tx_datetime"] - timedelta(days=TERMINAL_COMPROMISE_DAYS)
    known = (latest_known["latest_known"] >= started).reindex(queries.index)
    out = pd.Series(seen, index=test.index)
    out.loc[queries.index] = known.fillna(False).to_numpy(bool)
    return out.to_numpy(bool)


def ceilings(tx: pd.DataFrame, w: Window) -> dict[str, float]:
    """CP@100 of the two oracles, and the daily counts behind them."""
    test = test_rows(tx, w)
    shown = revealable(tx, test, w.delay_days)
    full = card_precision_top_k(test.assign(score=test["is_fraud"].astype(float)), CP_K)
    limited = card_precision_top_k(test.assign(score=shown.astype(float)), CP_K)
    return {
        "test_rows": float(len(test)),
        "frauds": float(test["is_fraud"].sum()),
        "revealable_frauds": float(shown.sum()),
        "cp100_full_oracle": full,
        "cp100_revealable_oracle": limited,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DATA, help="the handbook parquet (default: ../shared/data)"
    )
    parser.add_argument("--train-start", default="2018-07-25")
    parser.add_argument("--shifts", type=int, nargs="*", default=[0])
    args = parser.parse_args()
    if not args.data.exists():
        parser.error(f"{args.data} is missing: pass --data PATH (the handbook parquet)")
    tx = load_handbook(args.data)
    base = Window(datetime.strptime(args.train_start, "%Y-%m-%d"))
    for shift in args.shifts:
        w = base.shifted(shift)
        result = ceilings(tx, w)
        print(
            f"train_start {w.train_start:%Y-%m-%d}: test rows {result['test_rows']:,.0f}, "
            f"frauds {result['frauds']:.0f} ({result['revealable_frauds']:.0f} revealable) · "
            f"CP@100 full oracle {result['cp100_full_oracle']:.3f}, "
            f"revealable-only oracle {result['cp100_revealable_oracle']:.3f}"
        )


if __name__ == "__main__":
    main()
