"""The human side of a period, case by case (`monitoring.qa_data.review_cases`): every queue and
tier, Tier 2 and the second sign-off included, not only each transaction's first case.

A case's latency runs from when it entered its queue to when it left it (decided, or escalated
by a reviewer or by the SLA sweep); an open case past its due time counts as a breach, or a
stalled queue would look compliant. An override is a case's human decision against the model's
recommendation for its transaction (SPEC: never inferred); on an active-learning pick it is a
label against the automatic decision.
"""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel

from fraudloop.decisions import HUMAN_DECISIONS
from fraudloop.policy import SIGNOFF_QUEUE, Policy
from monitoring.model_quality import Rate, rate

CHARGEBACK = "chargeback"  # the label source of a chargeback
RECOMMENDED = {"human_approve": "approve", "human_reject": "reject"}
DIRECTIONS = {
    ("reject", "human_approve"): "model said block or review, the reviewer allowed",
    ("approve", "human_reject"): "model said allow, the reviewer found fraud",
}


class QueueLatency(BaseModel):
    queue: str
    tier: int
    sla_minutes: int
    closed: int
    median_minutes: float | None
    p90_minutes: float | None
    on_time: int
    open_overdue: int
    compliance: float | None


class Escalations(BaseModel):
    reason: str
    escalated: int
    resolved: int
    median_hours: float | None
    p90_hours: float | None


class QueueLoad(BaseModel):
    queue: str
    opened: int
    closed: int
    mean_open: float
    max_open: int
    open_at_end: int
    closed_per_day: float


def _closed_in(cases: pd.DataFrame, since: datetime, until: datetime) -> pd.Series:
    return (cases["reviewed_at"] >= since) & (cases["reviewed_at"] < until)


def _quantile(values: pd.Series, q: float) -> float | None:
    return float(values.quantile(q)) if len(values) else None


def latency(
    cases: pd.DataFrame, policy: Policy, since: datetime, until: datetime
) -> list[QueueLatency]:
    """Per queue, in tier order, and per tier over its queues (`queue` "Tier N, all queues")."""
    closed = cases[_closed_in(cases, since, until)]
    overdue = cases[
        (cases["created_at"] < until)
        & (cases["reviewed_at"].isna() | (cases["reviewed_at"] >= until))
        & (cases["sla_due_at"] < until)
    ]
    rows = []
    queues = sorted(policy.queues, key=lambda q: (policy.queues[q].tier, q))
    for name in queues:
        rows.append(_latency_row(name, [name], closed, overdue, policy))
    for tier in sorted({q.tier for q in policy.queues.values()}):
        members = [q for q in queues if policy.queues[q].tier == tier]
        rows.append(_latency_row(f"Tier {tier}, all queues", members, closed, overdue, policy))
    return rows


def _latency_row(
    name: str, queues: list[str], closed: pd.DataFrame, overdue: pd.DataFrame, policy: Policy
) -> QueueLatency:
    done = closed[closed["queue"].isin(queues)]
    late = int(overdue["queue"].isin(queues).sum())
    minutes = (done["reviewed_at"] - done["created_at"]).dt.total_seconds() / 60
    on_time = int((done["reviewed_at"] <= done["sla_due_at"]).sum())
    judged = len(done) + late
    return QueueLatency(
        queue=name,
        tier=policy.queues[queues[0]].tier,
        sla_minutes=policy.queue_sla(queues[0]) if len(queues) == 1 else 0,
        closed=len(done),
        median_minutes=_quantile(minutes, 0.5),
        p90_minutes=_quantile(minutes, 0.9),
        on_time=on_time,
        open_overdue=late,
        compliance=on_time / judged if judged else None,
    )


def decided_cases(cases: pd.DataFrame, since: datetime, until: datetime) -> pd.DataFrame:
    """Cases a person decided (approve or reject) in the period, with `overridden`."""
    decided = cases[_closed_in(cases, since, until) & cases["decision"].isin(HUMAN_DECISIONS)]
    chosen = decided["decision"].map(RECOMMENDED)
    return decided.assign(overridden=chosen != decided["recommendation"].astype(str))


def overrides_by(decided: pd.DataFrame, column: str, confidence: float) -> list[tuple[str, Rate]]:
    """Override rate per value of `column` (queue, reviewer), busiest first."""
    groups = decided.groupby(decided[column].astype(str), observed=True)["overridden"]
    table = groups.agg(["sum", "size"]).sort_values("size", ascending=False)
    return [(str(k), rate(int(r["sum"]), int(r["size"]), confidence)) for k, r in table.iterrows()]


def overrides_by_direction(decided: pd.DataFrame) -> list[tuple[str, int]]:
    pairs = zip(decided["recommendation"].astype(str), decided["decision"], strict=True)
    counts: dict[str, int] = dict.fromkeys(DIRECTIONS.values(), 0)
    for pair in pairs:
        if pair in DIRECTIONS:
            counts[DIRECTIONS[pair]] += 1
    return list(counts.items())


def signoff_agreement(
    cases: pd.DataFrame, since: datetime, until: datetime, confidence: float
) -> Rate:
    """Second sign-offs decided in the period whose decision matched the first reviewer's."""
    second = cases[
        (cases["queue"] == SIGNOFF_QUEUE)
        & _closed_in(cases, since, until)
        & cases["decision"].isin(HUMAN_DECISIONS)
    ]
    first = second["parent_case_id"].map(cases.set_index("case_id")["decision"])
    judged = first.isin(HUMAN_DECISIONS)
    return rate(
        int((first[judged] == second.loc[judged, "decision"]).sum()), int(judged.sum()), confidence
    )


class ReviewerCheck(BaseModel):
    reviewer: str
    approvals: int
    checked: int  # charged back, or past the chargeback delay without one
    charged_back: int
    share: Rate


def approvals_against_chargebacks(
    cases: pd.DataFrame,
    labels: pd.DataFrame,
    since: datetime,
    as_of: datetime,
    delay_days: int,
    confidence: float,
) -> list[ReviewerCheck]:
    """Each reviewer's approvals of [since, as_of) against the fraud chargebacks known by
    `as_of` (`labels`: transaction_id, is_fraud, known_at, source): how often an approved
    payment later turned out to be fraud. An approval counts once its outcome is known."""
    approved = cases[_closed_in(cases, since, as_of) & (cases["decision"] == "human_approve")]
    known = labels[
        (labels["source"] == CHARGEBACK) & (labels["is_fraud"] == 1) & (labels["known_at"] <= as_of)
    ]
    charged = approved["transaction_id"].isin(known["transaction_id"])
    matured = approved["tx_datetime"] <= as_of - timedelta(days=delay_days)
    frame = approved.assign(charged=charged, checked=charged | matured)
    out = []
    for reviewer, group in frame.groupby(frame["reviewer"].astype(str), sort=True):
        hits, n = int(group["charged"].sum()), int(group["checked"].sum())
        out.append(
            ReviewerCheck(
                reviewer=str(reviewer),
                approvals=len(group),
                checked=n,
                charged_back=hits,
                share=rate(hits, n, confidence),
            )
        )
    return out


def escalations(cases: pd.DataFrame, since: datetime, until: datetime) -> list[Escalations]:
    """Cases that left their queue upward in the period, by why, and how long their
    transaction then took to get its final decision (resolved by the period's end)."""
    up = cases[_closed_in(cases, since, until) & (cases["status"] == "escalated")]
    out = []
    for reason, group in up.groupby(up["exit_code"].astype(str), sort=True):
        done = group["final_at"].notna() & (group["final_at"] >= group["reviewed_at"])
        done &= group["final_at"] < until
        hours = (group.loc[done, "final_at"] - group.loc[done, "reviewed_at"]).dt.total_seconds()
        hours = hours / 3600
        out.append(
            Escalations(
                reason=str(reason),
                escalated=len(group),
                resolved=int(done.sum()),
                median_hours=_quantile(hours, 0.5),
                p90_hours=_quantile(hours, 0.9),
            )
        )
    return out


def open_cases(cases: pd.DataFrame, at: pd.DatetimeIndex) -> pd.DataFrame:
    """Cases open at each moment of `at`, per queue: entered by then, not yet left."""
    out = {}
    for queue, group in cases.groupby(cases["queue"].astype(str), sort=True):
        opened = np.sort(group["created_at"].to_numpy())
        left = np.sort(group["reviewed_at"].dropna().to_numpy())
        moments = at.to_numpy()
        out[str(queue)] = np.searchsorted(opened, moments, side="right") - np.searchsorted(
            left, moments, side="right"
        )
    return pd.DataFrame(out, index=at)


def queue_load(
    cases: pd.DataFrame, since: datetime, until: datetime, step: timedelta
) -> tuple[list[QueueLoad], pd.DataFrame]:
    """Queue length over the period (sampled every `step`) and throughput per queue."""
    at = pd.date_range(since, until, freq=step, inclusive="right")
    length = open_cases(cases, at)
    days = (until - since).total_seconds() / 86_400
    rows = []
    for queue in length.columns:
        mine = cases[cases["queue"].astype(str) == queue]
        closed = int(_closed_in(mine, since, until).sum())
        rows.append(
            QueueLoad(
                queue=queue,
                opened=int(((mine["created_at"] >= since) & (mine["created_at"] < until)).sum()),
                closed=closed,
                mean_open=float(length[queue].mean()) if len(length) else 0.0,
                max_open=int(length[queue].max()) if len(length) else 0,
                open_at_end=int(length[queue].iloc[-1]) if len(length) else 0,
                closed_per_day=closed / days if days else 0.0,
            )
        )
    return rows, length
