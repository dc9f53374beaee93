"""What became of each decision, as it was known at one moment: fraud, legitimate, still
pending, or never to be known.

Chargebacks arrive days late, so every quality figure of a recent period rests on the labels
that have matured. One rule decides, for every report: the latest label known by then (ties:
fraud), as `fraudloop.policy_replay.ground_truth` reads them; an approved payment without a
label past the chargeback delay is legitimate (its chargeback would have arrived), a younger
one is pending; a declined payment without a label is never known (no chargeback follows a
payment that did not happen); a decision still open is pending.
"""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from fraudloop.labels import DECLINED

FRAUD, LEGIT, PENDING, NEVER = "fraud", "legit", "pending", "never"
OUTCOMES = (FRAUD, LEGIT, PENDING, NEVER)
APPROVED = ("auto_approve", "human_approve")


def latest_labels(labels: pd.DataFrame, known_by: datetime) -> pd.Series:
    """is_fraud by transaction_id: the latest label known at `known_by` (a fraud wins a tie)."""
    known = labels[labels["known_at"] <= known_by]
    latest = known.sort_values(["known_at", "is_fraud"], kind="stable").drop_duplicates(
        "transaction_id", keep="last"
    )
    return latest.set_index("transaction_id")["is_fraud"].astype(int)


def outcomes(
    decisions: pd.DataFrame, labels: pd.DataFrame, known_by: datetime, delay_days: int
) -> pd.Series:
    """One outcome per decision (`decisions`: transaction_id, tx_datetime, final_decision;
    `labels`: transaction_id, is_fraud, known_at), aligned with `decisions`."""
    label = decisions["transaction_id"].map(latest_labels(labels, known_by))
    final = decisions["final_decision"]
    matured = decisions["tx_datetime"] <= known_by - timedelta(days=delay_days)
    choices = [
        label == 1,
        label == 0,
        final.isin(APPROVED) & matured,
        final.isin(DECLINED),
    ]
    values = np.select(choices, [FRAUD, LEGIT, LEGIT, NEVER], default=PENDING)
    return pd.Series(pd.Categorical(values, categories=OUTCOMES), index=decisions.index)


def truth(outcome: pd.Series) -> pd.Series:
    """1 for fraud, 0 for legitimate, NaN where the outcome is not known."""
    return outcome.map({FRAUD: 1.0, LEGIT: 0.0}).astype(float)
