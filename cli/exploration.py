"""`fraudloop exploration`: what people were asked to review beyond the router, and what the
automatic decisions miss, estimated from the random exploration picks (inverse propensity)."""

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from fraudloop.errors import FraudloopError
from fraudloop.policy import ACTIVE_LEARNING_QUEUE, EXPLORATION, load_policy
from fraudloop.settings import get_settings

if TYPE_CHECKING:  # heavy: imported when the command runs, so `--help` stays instant
    import pandas as pd
    from sqlalchemy.orm import Session

    from monitoring.exploration import MissEstimate

console = Console()


def picks_frame(session: "Session", since: datetime, until: datetime) -> "pd.DataFrame":
    """The active-learning picks opened in [since, until), with the automatic decision and the
    label their answer gave (None while unanswered)."""
    from sqlalchemy import and_, select

    from fraudloop.storage import Decision, Label, ReviewTask, read_frame

    labelled = and_(
        Label.transaction_id == ReviewTask.transaction_id,
        Label.source.in_([ACTIVE_LEARNING_QUEUE, EXPLORATION]),
    )
    stmt = (
        select(
            ReviewTask.transaction_id,
            ReviewTask.strategy,
            ReviewTask.propensity,
            Decision.final_decision,
            Label.is_fraud,
        )
        .join(Decision, Decision.transaction_id == ReviewTask.transaction_id)
        .outerjoin(Label, labelled)
        .where(ReviewTask.queue == ACTIVE_LEARNING_QUEUE)
        .where(ReviewTask.created_at >= since, ReviewTask.created_at < until)
    )
    return read_frame(session, stmt)


def exploration(
    days: Annotated[int, typer.Option(help="Days of picks to read, up to --as-of")] = 7,
    as_of: Annotated[
        datetime | None, typer.Option(help="Window end (default: the latest pick stored)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the estimates as JSON")] = None,
) -> None:
    """Active-learning picks by strategy, and the share of fraud among auto-allowed and of
    legitimate among auto-blocked transactions, estimated from the exploration answers."""
    from sqlalchemy import func, select

    from fraudloop.storage import ReviewTask, migrate, open_session
    from monitoring.exploration import estimate_misses

    settings = get_settings()
    try:
        policy = load_policy(settings.policy_file)
    except FraudloopError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from exc
    migrate(settings.database_url)
    with open_session(settings.database_url) as session:
        end = as_of or session.scalar(
            select(func.max(ReviewTask.created_at)).where(ReviewTask.queue == ACTIVE_LEARNING_QUEUE)
        )
        if end is None:
            console.print(
                "no active-learning picks stored yet: `fraudloop score` adds them within the "
                f"policy's daily review budget ({policy.review.daily_budget})",
                soft_wrap=True,
            )
            raise typer.Exit(code=1)
        end = end + timedelta(microseconds=1) if as_of is None else end  # the latest included
        picks = picks_frame(session, end - timedelta(days=days), end)
    answered = picks[(picks["strategy"] == EXPLORATION) & picks["is_fraud"].notna()]
    estimates = estimate_misses(answered, policy.active_learning.estimate_confidence)
    console.print(f"{len(picks):,} picks in the {days} days up to {end:%Y-%m-%d %H:%M} UTC")
    console.print(_strategy_table(picks))
    console.print(_estimate_table(estimates))
    if out is not None:
        out.write_text(json.dumps([e.model_dump() for e in estimates], indent=2))
        console.print(f"estimates -> {out}", soft_wrap=True)


def _strategy_table(picks: "pd.DataFrame") -> Table:
    table = Table(title="Picks beyond the router, by strategy")
    for name in ("strategy", "picked", "answered", "labelled fraud"):
        table.add_column(name, justify="left" if name == "strategy" else "right")
    for strategy, group in picks.groupby("strategy", sort=True):
        fraud = group["is_fraud"].dropna()
        table.add_row(str(strategy), str(len(group)), str(len(fraud)), str(int(fraud.sum())))
    return table


def _estimate_table(estimates: "list[MissEstimate]") -> Table:
    level = f"{estimates[0].confidence:.0%}" if estimates else ""
    table = Table(
        title="What automatic decisions miss (exploration answers weighted by 1 / propensity; "
        "they stand for that many automatic decisions)"
    )
    table.add_column("miss")
    for name in ("answered", "seen", "stand for", "estimate", f"{level} interval"):
        table.add_column(name, justify="right")
    for e in estimates:
        w = e.estimate
        interval = "n/a" if w.low is None or w.high is None else f"{w.low:.1%}–{w.high:.1%}"
        table.add_row(
            e.segment,
            str(e.answered),
            str(e.misses),
            f"{w.represented:,.0f}",
            "n/a" if w.rate is None else f"{w.rate:.2%}",
            interval,
        )
    return table
