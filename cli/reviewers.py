"""`fraudloop reviewers …`: the people who work the review queues (Label Studio users + roles)."""

import secrets
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fraudloop.clock import utcnow
from fraudloop.errors import FraudloopError
from fraudloop.settings import get_settings

app = typer.Typer(
    help="Reviewers: create Label Studio users with a fraudloop role.", no_args_is_help=True
)
console = Console()


@app.command("add")
def add(
    email: Annotated[str, typer.Argument(help="The reviewer's e-mail (their login and audit id)")],
    role: Annotated[
        str, typer.Option(help="reviewer (Tier 1) or senior (Tier 1 and Tier 2)")
    ] = "reviewer",
    password: Annotated[
        str | None, typer.Option(help="Initial password (default: generated and printed once)")
    ] = None,
) -> None:
    """Create the Label Studio user (or find it) and record its role for the audit trail."""
    from fraudloop.storage import migrate, open_session
    from labeling.client import connect
    from labeling.reviewers import add_reviewer

    if role not in ("reviewer", "senior"):
        console.print(f"[red]error:[/red] --role must be reviewer or senior, got {role!r}")
        raise typer.Exit(code=2)
    s = get_settings()
    secret = password or secrets.token_urlsafe(12)
    try:
        client = connect(s.labelstudio_url, s.labelstudio_token)
        s.home.mkdir(parents=True, exist_ok=True)
        migrate(s.database_url)
        with open_session(s.database_url) as session, session.begin():
            now = utcnow()
            user_id, created = add_reviewer(
                session, client, email, role, secret, s.labelstudio_username, now
            )
    except FraudloopError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from exc
    if created:
        shown = "" if password else f", password {secret} (shown once: ask them to change it)"
        console.print(f"created {email} as {role} (Label Studio user {user_id}){shown}")
    else:
        console.print(f"{email} already exists in Label Studio (user {user_id}); role set: {role}")
    console.print(f"log in at {s.labelstudio_url}/user/login", soft_wrap=True)


@app.command("list")
def list_() -> None:
    """Reviewers fraudloop knows, with their role."""
    from sqlalchemy import select

    from fraudloop.storage import Reviewer, migrate, open_session

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    url = settings.database_url
    migrate(url)
    table = Table(title="reviewers")
    for column in ("e-mail", "role", "Label Studio user", "since"):
        table.add_column(column)
    with open_session(url) as session:
        for r in session.scalars(select(Reviewer).order_by(Reviewer.email)):
            table.add_row(r.email, r.role, str(r.ls_user_id), f"{r.created_at:%Y-%m-%d %H:%M}")
    console.print(table)
