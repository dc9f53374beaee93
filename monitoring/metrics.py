"""The override rate over the decisions table: what the QA report and the alert rules share.

The frame has one row per transaction with `recommendation` ("approve"/"reject", the model's)
and `final_decision` (auto_approve / auto_reject / human_approve / human_reject / escalated /
None while pending).
"""

import pandas as pd
from pydantic import BaseModel

# A human decision is compared with the recommendation it would have agreed with.
HUMAN_DECISIONS = {"human_approve": "approve", "human_reject": "reject"}


class OverrideRate(BaseModel):
    reviewed: int
    overridden: int
    rate: float | None


def override_rate(df: pd.DataFrame) -> OverrideRate:
    """Share of human decisions that differ from the model's recommendation.

    Pending and escalated reviews have no human decision yet, so they are neither reviewed nor
    overridden; counting them would dilute the rate while the queue is long.
    """
    human = df["final_decision"].map(HUMAN_DECISIONS)
    decided = human.notna()
    reviewed = int(decided.sum())
    overridden = int((human[decided] != df.loc[decided, "recommendation"]).sum())
    return OverrideRate(
        reviewed=reviewed,
        overridden=overridden,
        rate=overridden / reviewed if reviewed else None,
    )
