"""Replay stored decisions under a candidate policy: what a risk team checks before a change.

Pure functions over the decisions frame (`fraudloop.decisions.monitoring_frame`) and the label
events (`fraudloop.labels.labels`): the stored score of each decision is routed again, fallback
decisions (no score) go through the candidate's fallback rules. Nothing is written.
"""

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from fraudloop.decisions import HUMAN_DECISIONS
from fraudloop.errors import FraudloopError
from fraudloop.policy import (
    REVIEW_ROUTES,
    FallbackRule,
    Policy,
    Route,
    fallback_route,
    is_high_impact,
    route_transaction,
)

ACTIONS = ("blocked", "allowed", "review")
FLAGGED_CARD_RULE = f"fallback.{FallbackRule.FLAGGED_CARD.value}"  # as `pipeline.route` names it
TRUTHS = ("fraud", "legit", "unknown")
_ACTION = {Route.AUTO_BLOCK: "blocked", Route.AUTO_ALLOW: "allowed"}


@dataclass(frozen=True)
class Replay:
    """`outcomes`: one row per (truth, action) with count and amount under each policy;
    `review_load`: one row per (day, queue) with the cases each policy sends there, and
    how many of them need a second sign-off (high impact)."""

    n_decisions: int
    outcomes: pd.DataFrame
    review_load: pd.DataFrame


def replay_routes(decisions: pd.DataFrame, policy: Policy) -> pd.Series:
    """The route each stored decision would get under `policy` (fallback rules when unscored)."""
    reasons = decisions["reasons"] if "reasons" in decisions else [None] * len(decisions)
    routes = [
        fallback_route(
            amount,
            str((snapshot or {}).get("terminal_id", "")),
            policy,
            flagged=_card_flagged(why),
        )
        if pd.isna(score)
        else route_transaction(score, confidence, amount, policy)
        for score, confidence, amount, snapshot, why in zip(
            decisions["score"],
            decisions["confidence"],
            decisions["amount"],
            decisions["input_snapshot"],
            reasons,
            strict=True,
        )
    ]
    return pd.Series([r.value for r in routes], index=decisions.index, dtype=object)


def _card_flagged(reasons: list[dict[str, object]] | None) -> bool:
    """Whether the card rule applied when the fallback decided (its stored reasons say so):
    the flag is a fact of that moment, which the replayed policy cannot look up again."""
    return any(r.get("feature") == FLAGGED_CARD_RULE for r in reasons or [])


def ground_truth(decisions: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """'fraud' / 'legit' from the latest label event (chargeback or review), else from the
    final human decision, else 'unknown' (too recent for a chargeback to have arrived)."""
    latest = (
        labels.sort_values(["known_at", "is_fraud"], kind="stable")
        .drop_duplicates("transaction_id", keep="last")
        .set_index("transaction_id")["is_fraud"]
    )
    verdict = decisions["transaction_id"].map(latest)
    human = decisions["final_decision"].map(HUMAN_DECISIONS)
    verdict = verdict.fillna(human)
    return verdict.map({1: "fraud", 0: "legit"}).fillna("unknown")


def outcome_table(
    decisions: pd.DataFrame, truth: pd.Series, current: pd.Series, candidate: pd.Series
) -> pd.DataFrame:
    """Count and amount per (truth, action) under both policies, every combination present."""
    frame = pd.DataFrame({"truth": truth, "amount": decisions["amount"].astype(float)})
    columns = {}
    for name, routes in (("current", current), ("candidate", candidate)):
        action = routes.map(lambda r: _ACTION.get(Route(r), "review"))
        grouped = frame.assign(action=action).groupby(["truth", "action"])["amount"]
        columns[f"{name}_n"] = grouped.size()
        columns[f"{name}_amount"] = grouped.sum()
    full = pd.MultiIndex.from_product([TRUTHS, ACTIONS], names=["truth", "action"])
    table = pd.DataFrame(columns).reindex(full).fillna(0.0)
    for name in ("current", "candidate"):
        table[f"{name}_n"] = table[f"{name}_n"].astype(int)
        table[f"{name}_amount"] = table[f"{name}_amount"].round(2)
    return table.reset_index()


def review_load(decisions: pd.DataFrame, runs: dict[str, tuple[pd.Series, Policy]]) -> pd.DataFrame:
    """Review cases per day and queue (tier-1 sync / async) for each named run of routes, plus
    the high-impact ones among them that also take a second reviewer."""
    day = pd.to_datetime(decisions["decided_at"]).dt.strftime("%Y-%m-%d")
    parts = []
    for name, (routes, policy) in runs.items():
        high = decisions["amount"].map(lambda a, p=policy: is_high_impact(float(a), p))
        queued = routes.isin([r.value for r in REVIEW_ROUTES])
        part = pd.DataFrame({"day": day, "queue": routes, "high": high})[queued]
        grouped = part.groupby(["day", "queue"])
        parts.append(grouped.size().rename(name))
        parts.append(grouped["high"].sum().astype(int).rename(f"{name}_second_signoff"))
    load = pd.concat(parts, axis=1).fillna(0).astype(int)
    load.index = load.index.set_names(["day", "queue"])
    return load.sort_index().reset_index()


def compare(
    decisions: pd.DataFrame, labels: pd.DataFrame, current: Policy, candidate: Policy
) -> Replay:
    """Both policies over the same stored decisions (one row per transaction)."""
    decisions = decisions.drop_duplicates("transaction_id").reset_index(drop=True)
    now_routes = replay_routes(decisions, current)
    new_routes = replay_routes(decisions, candidate)
    return Replay(
        n_decisions=len(decisions),
        outcomes=outcome_table(decisions, ground_truth(decisions, labels), now_routes, new_routes),
        review_load=review_load(
            decisions, {"current": (now_routes, current), "candidate": (new_routes, candidate)}
        ),
    )


def parse_since(text: str, until: datetime) -> datetime:
    """'7d', '36h', '90m' before `until`, or an ISO date/time."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    text = text.strip()
    if text[-1:] in units and text[:-1].isdigit():
        return until - pd.Timedelta(**{units[text[-1]]: int(text[:-1])}).to_pytimedelta()
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise FraudloopError(
            f"--since {text!r}: use a duration like 7d, 36h, 90m or an ISO date"
        ) from exc
