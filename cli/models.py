"""`fraudloop models …`: the registered versions, what made them, and who holds `champion`.

MLflow and the store are imported inside the commands, so `fraudloop --help` stays instant.
"""

import getpass
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fraudloop.clock import utcnow
from fraudloop.errors import FraudloopError
from fraudloop.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models.governance import AliasMove, VersionInfo

models_app = typer.Typer(
    help="Model owners: list registered versions, promote one, roll back the champion.",
    no_args_is_help=True,
)
console = Console()
T = TypeVar("T")

Actor = Annotated[
    str | None, typer.Option(help="Who is moving the alias, for the audit (default: login name)")
]
Note = Annotated[str | None, typer.Option(help="Why, kept in the audit event")]


@models_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, help="Newest versions shown")] = 20,
) -> None:
    """Registered versions, newest first: aliases, holdout metric, labels by source, lineage."""
    from fraudloop.policy import load_policy
    from models.governance import list_versions

    s = get_settings()
    metric = _guard(lambda: load_policy(s.policy_file).learning.promotion_metric)
    versions = _guard(lambda: list_versions(s.model_name, s.tracking_uri, limit))
    if not versions:
        console.print(
            f"no registered versions of '{s.model_name}' at {s.tracking_uri}: "
            "`fraudloop train` registers the first",
            soft_wrap=True,
            markup=False,
        )
        return
    console.print(_table(s.model_name, metric, versions))


@models_app.command("promote")
def promote(
    version: Annotated[int, typer.Argument(help="The registered version to make champion")],
    actor: Actor = None,
    note: Note = None,
) -> None:
    """Move `champion` to VERSION (a person's decision, whatever the metrics); audited."""
    from models.governance import promote_version

    s = get_settings()
    who = actor or _login()
    move = _in_store(
        lambda session: promote_version(
            session, s.model_name, version, who, s.tracking_uri, utcnow(), note
        )
    )
    console.print(move.message(), soft_wrap=True, markup=False)


@models_app.command("rollback")
def rollback(actor: Actor = None, note: Note = None) -> None:
    """Give `champion` back to the version that held it before the current one; audited."""
    from models.governance import rollback as roll_back

    s = get_settings()
    who = actor or _login()
    move = _in_store(
        lambda session: roll_back(session, s.model_name, who, s.tracking_uri, utcnow(), note)
    )
    console.print(move.message(), soft_wrap=True, markup=False)


def _in_store(move: Callable[["Session"], "AliasMove"]) -> "AliasMove":
    """One store transaction around an alias move, so its audit event commits with it."""
    from fraudloop.storage import migrate, open_session

    url = get_settings().database_url

    def run() -> "AliasMove":
        migrate(url)
        with open_session(url) as session, session.begin():
            return move(session)

    return _guard(run)


def _guard(fn: Callable[[], T]) -> T:
    """A user's error or an unreachable registry as one line and exit 2, never a traceback."""
    from mlflow.exceptions import MlflowException

    try:
        return fn()
    except FraudloopError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=2) from exc
    except MlflowException as exc:
        uri = get_settings().tracking_uri
        console.print(f"[red]error:[/red] MLflow registry {escape(uri)}: {escape(exc.message)}")
        raise typer.Exit(code=2) from exc


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment (a container's uid)
        return "cli"


def _table(name: str, metric: str, versions: list["VersionInfo"]) -> Table:
    table = Table(title=f"{name}: registered versions")
    for column in ("version", "aliases", "created (UTC)", f"holdout {metric}"):
        table.add_column(column, justify="right" if column == "version" else "left")
    for column in ("labels by source", "parent", "policy", "strategy", "data window"):
        table.add_column(column)
    for v in versions:
        value = v.metrics.get(f"holdout_{metric}")
        window = f"{v.window.get('start', '?')[:10]} .. {v.window.get('end', '?')[:10]}"
        table.add_row(
            f"v{v.version}",
            ", ".join(v.aliases) or "-",
            v.created.strftime("%Y-%m-%d %H:%M"),
            "-" if value is None else f"{value:.4f}",
            ", ".join(f"{src} {n:,}" for src, n in sorted(v.label_counts.items())) or "-",
            "-" if v.parent is None else f"v{v.parent}",
            v.policy or "-",
            v.strategy or "-",
            window if v.window else "-",
        )
    return table
