"""`fraudloop policy …`: check, explain and simulate a policy file before it goes live."""

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fraudloop.errors import FraudloopError
from fraudloop.policy import (
    Policy,
    Route,
    decision_table,
    fallback_condition,
    fallback_rules,
    load_policy,
)
from fraudloop.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

policy_app = typer.Typer(
    help="Risk team: validate, explain and replay a decision policy.", no_args_is_help=True
)
console = Console()

PolicyFile = Annotated[Path, typer.Argument(help="Policy YAML file")]


def _load(path: Path) -> Policy:
    try:
        return load_policy(path)
    except FraudloopError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=2) from exc


@policy_app.command("check")
def check(path: PolicyFile) -> None:
    """Validate a policy file; exit 2 naming every bad field."""
    policy = _load(path)
    console.print(f"{path}: policy {policy.version} ({policy.mode} mode) is valid", soft_wrap=True)


@policy_app.command("explain")
def explain(
    path: Annotated[
        Path | None, typer.Argument(help="Policy YAML file (default: the configured one)")
    ] = None,
) -> None:
    """Print the decision table: score bands -> route and SLA, fallback and high-impact rules."""
    policy = _load(path or get_settings().policy_file)
    console.print(_decision_table(policy))
    console.print(_fallback_table(policy))
    console.print(
        f"high impact: amount > {policy.high_impact.amount_above:,.2f} needs a second sign-off "
        f"by a different reviewer; tier 2 (senior) SLA {policy.sla_minutes.tier2} min; "
        f"review budget {policy.review.daily_budget}/day",
        soft_wrap=True,
    )


@policy_app.command("simulate")
def simulate(
    path: PolicyFile,
    since: Annotated[str, typer.Option(help="Window: 7d, 36h, 90m or an ISO date")] = "7d",
    until: Annotated[
        datetime | None, typer.Option(help="Window end (default: the latest stored decision)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the comparison as JSON")] = None,
) -> None:
    """Replay recent decisions under a candidate policy against the current one."""
    from sqlalchemy import func, select

    from fraudloop import labels
    from fraudloop.decisions import monitoring_frame
    from fraudloop.policy_replay import compare, parse_since
    from fraudloop.storage import Decision, migrate, open_session

    settings = get_settings()
    current, candidate = _load(settings.policy_file), _load(path)
    if candidate.version == current.version and candidate != current:
        console.print(
            f"[yellow]warning:[/yellow] {path} differs from the current policy but keeps its "
            f"version {current.version}: bump `version` so decisions tell the two apart",
            soft_wrap=True,
        )
    url = settings.database_url
    migrate(url)
    with open_session(url) as session:
        end = until or session.scalar(select(func.max(Decision.decided_at)))
        if end is None:
            console.print(f"no stored decisions in {url}: nothing to replay", soft_wrap=True)
            raise typer.Exit(code=1)
        try:
            start = parse_since(since, end)
        except FraudloopError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(code=2) from exc
        frame = monitoring_frame(session, since=start)
        frame = frame[frame["decided_at"] <= end]
        replay = compare(frame, labels.labels(session), current, candidate)
    console.print(
        f"{replay.n_decisions:,} decisions from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}: "
        f"current {current.version} vs candidate {candidate.version} ({path})",
        soft_wrap=True,
    )
    console.print(_outcome_table(replay.outcomes))
    console.print(_load_table(replay.review_load, candidate.review.daily_budget))
    if out is not None:
        out.write_text(
            json.dumps(
                {
                    "window": [start.isoformat(), end.isoformat()],
                    "current_version": current.version,
                    "candidate_version": candidate.version,
                    "n_decisions": replay.n_decisions,
                    "outcomes": replay.outcomes.to_dict("records"),
                    "review_load": replay.review_load.to_dict("records"),
                },
                indent=2,
            )
        )
        console.print(f"-> {out}", soft_wrap=True)


def _decision_table(policy: Policy) -> Table:
    score = "score" if policy.mode == "fraud" else "risk"
    table = Table(title=f"policy {policy.version}: {policy.mode} mode")
    for column in (score, "confidence", "route", "SLA", "why"):
        table.add_column(column)
    for rule in decision_table(policy):
        sla = policy.sla_for(rule.route)
        table.add_row(
            rule.score.describe(score),
            rule.confidence.describe("confidence"),
            rule.route.value,
            f"{sla} min" if sla else "-",
            rule.why,
        )
    return table


def _fallback_table(policy: Policy) -> Table:
    """The fallback rules in deciding order, each by the `fallback` field that sets it."""
    table = Table(title="fallback rules (model unavailable; decisions marked fallback)")
    for column in ("rule (fallback.…)", "condition", "route"):
        table.add_column(column)
    for rule in fallback_rules(policy):
        audited = " (audited as fallback)" if rule.route is Route.AUTO_ALLOW else ""
        table.add_row(rule.rule.value, fallback_condition(rule.rule, policy), rule.route + audited)
    days = policy.fallback.flagged_card_days
    table.caption = (
        "the first rule that applies decides; a decision's reasons list every rule that applied. "
        + (
            f"flagged: a fraud label known (review, active learning, chargeback) or a payment "
            f"declined (automatically or by a reviewer) in the last {days} days, unless a later "
            "legit label took it back; a card is its customer_id"
            if days is not None
            else "no card rule: set fallback.flagged_card_days to add one"
        )
    )
    return table


def _outcome_table(outcomes: "pd.DataFrame") -> Table:
    table = Table(title="volume by truth and action (current -> candidate)")
    for column in ("truth", "action", "count", "Δ count", "amount", "Δ amount"):
        table.add_column(column, justify="right" if column not in ("truth", "action") else "left")
    for row in outcomes.itertuples(index=False):
        table.add_row(
            row.truth,
            row.action,
            f"{row.current_n:,} -> {row.candidate_n:,}",
            f"{row.candidate_n - row.current_n:+,}",
            f"{row.current_amount:,.2f} -> {row.candidate_amount:,.2f}",
            f"{row.candidate_amount - row.current_amount:+,.2f}",
        )
    return table


def _load_table(load: "pd.DataFrame", budget: int) -> Table:
    table = Table(title=f"review load per day and queue (budget {budget}/day)")
    for column in ("day", "queue", "current", "candidate", "Δ", "2nd sign-off"):
        table.add_column(column, justify="left" if column in ("day", "queue") else "right")
    for row in load.itertuples(index=False):
        table.add_row(
            row.day,
            row.queue,
            f"{row.current:,}",
            f"{row.candidate:,}",
            f"{row.candidate - row.current:+,}",
            f"{row.current_second_signoff:,} -> {row.candidate_second_signoff:,}",
        )
    daily = load.groupby("day")[["current", "candidate"]].sum()
    over = daily[daily["candidate"] > budget]
    if len(over):
        table.caption = f"candidate exceeds the daily budget on {len(over)} day(s)"
    return table
