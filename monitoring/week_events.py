"""What happened to the system in a period, from the audit trail: alerts fired and resolved,
champion moves (promotions, rejections, manual promotions, rollbacks), Tier 3 pages; and the
policy versions its decisions were made under, with the change between them.

Every decision stores its policy version, so a policy change shows as the first decision under
the new version. The policy's text is kept by the report (`reports/policies/<version>.yaml`),
so the change between two versions it has seen can be shown line by line.
"""

import difflib
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

MOVES = ("promotion", "promotion_rejected", "promotion_manual", "rollback")
ALERTS = {"alert": "fired", "alert_resolved": "resolved"}


class PolicyChange(BaseModel):
    version: str
    previous: str | None
    first_decision: str  # ISO time of the first decision under it
    diff: str | None  # unified diff of the two policy files, when both were kept


def _details(events: pd.DataFrame) -> list[dict[str, object]]:
    return [d if isinstance(d, dict) else {} for d in events["details"]]


def _at(value: object) -> str:
    return pd.Timestamp(value).isoformat(timespec="minutes")  # type: ignore[arg-type]


def alert_rows(events: pd.DataFrame) -> list[list[str]]:
    mine = events[events["event_type"].isin(ALERTS)]
    return [
        [
            _at(at),
            ALERTS[kind],
            str(d.get("rule", "")),
            str(d.get("scope", "")),
            _fmt(d.get("value")),
            _fmt(d.get("threshold")),
            str(d.get("message", "")),
        ]
        for at, kind, d in zip(mine["timestamp"], mine["event_type"], _details(mine), strict=True)
    ]


def move_rows(events: pd.DataFrame) -> list[list[str]]:
    mine = events[events["event_type"].isin(MOVES)]
    return [
        [
            _at(at),
            kind,
            f"v{version}" if version else "",
            _version(d.get("previous_champion")),
            actor,
            str(d.get("reason", "")),
        ]
        for at, kind, version, actor, d in zip(
            mine["timestamp"],
            mine["event_type"],
            mine["model_version"],
            mine["actor"],
            _details(mine),
            strict=True,
        )
    ]


def page_rows(events: pd.DataFrame) -> list[list[str]]:
    mine = events[events["event_type"] == "tier3_page"]
    return [
        [_at(at), str(tx or ""), str(d.get("reason", ""))]
        for at, tx, d in zip(mine["timestamp"], mine["transaction_id"], _details(mine), strict=True)
    ]


def policy_changes(decisions: pd.DataFrame, previous: str | None, kept: Path) -> list[PolicyChange]:
    """Each policy version that took over in the period (`decisions`: decided_at,
    policy_version), after `previous` (the version of the last decision before it)."""
    firsts = (
        decisions.groupby(decisions["policy_version"].astype(str), observed=True)["decided_at"]
        .min()
        .sort_values()
    )
    out = []
    for version, at in firsts.items():
        if version != previous:
            out.append(
                PolicyChange(
                    version=str(version),
                    previous=previous,
                    first_decision=_at(at),
                    diff=policy_diff(kept, previous, str(version)),
                )
            )
        previous = str(version)
    return out


def policy_diff(kept: Path, old: str | None, new: str) -> str | None:
    before, after = kept / f"{old}.yaml", kept / f"{new}.yaml"
    if old is None or not before.exists() or not after.exists():
        return None
    lines = difflib.unified_diff(
        before.read_text().splitlines(),
        after.read_text().splitlines(),
        fromfile=f"policy {old}",
        tofile=f"policy {new}",
        lineterm="",
    )
    return "\n".join(lines)


def keep_policy(kept: Path, version: str, text: str) -> Path:
    """Keep the text of the policy in force under its version, once (never rewritten)."""
    kept.mkdir(parents=True, exist_ok=True)
    path = kept / f"{version}.yaml"
    if not path.exists():
        path.write_text(text)
    return path


def _version(value: object) -> str:
    return "" if value is None else f"v{value}"


def _fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else ""
