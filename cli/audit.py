"""`fraudloop audit …`: compliance. Verify the tamper-evident trail, sign checkpoints of it, and
prove one transaction's events to someone who has no access to the database.

`check-proof` reads only the proof file and a public key: no settings, no database.
"""

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fraudloop.errors import FraudloopError
from fraudloop.settings import get_settings

audit_app = typer.Typer(
    help="Compliance: verify the tamper-evident audit trail, sign checkpoints, prove a decision.",
    no_args_is_help=True,
)
console = Console()

CheckpointDir = Annotated[
    Path | None,
    typer.Option("--checkpoints", help="Checkpoint directory (default: <home>/checkpoints)"),
]
PublicKey = Annotated[
    str | None,
    typer.Option(
        help="Public key the checkpoints are signed with: its PEM file or 64 hex digits "
        "(default: <home>/audit-signing.pub; a verifier should bring its own copy)"
    ),
]


@audit_app.command("verify")
def verify(checkpoints: CheckpointDir = None, public_key: PublicKey = None) -> None:
    """Recompute the hash chain, check its head row and the decisions table; exit 1 if broken.

    With --checkpoints the signed checkpoints too: they catch a cut-off tail and a rewritten
    suffix back to the last one. Each problem is named.
    """
    from fraudloop import audit
    from fraudloop import checkpoints as signed
    from fraudloop.storage import migrate, open_session

    url = get_settings().database_url
    try:
        key = None if checkpoints is None else signed.load_public_key(_public_key(public_key))
        migrate(url)
        with open_session(url) as session:
            if key is None or checkpoints is None:
                result = audit.verify(session)
            else:
                result = signed.verify(session, checkpoints, key)
    except FraudloopError as exc:
        _fail(exc)
    if result.ok:
        console.print(result.message(), soft_wrap=True, markup=False)
        return
    console.print(f"[red]error:[/red] {escape(result.message())}", soft_wrap=True)
    raise typer.Exit(code=1)


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="JSONL file to write (one event a line)")],
    transaction_id: Annotated[
        str | None, typer.Option(help="Only this transaction's events")
    ] = None,
    checkpoints: CheckpointDir = None,
) -> None:
    """Write audit events in chain order, with their hashes, as JSONL.

    A whole export ends with the signed checkpoints (`{"checkpoint": ...}` lines), a copy out of
    the database's reach.
    """
    from fraudloop import audit
    from fraudloop import checkpoints as signed
    from fraudloop.storage import migrate, open_session

    settings = get_settings()
    target = checkpoints or signed.directory(settings.home)
    kept = []
    if transaction_id is None and target.is_dir():
        kept = [cp.model_dump() for _, cp, _ in signed.read(target) if cp is not None]
    migrate(settings.database_url)
    with open_session(settings.database_url) as session:
        n = audit.export_jsonl(session, out, transaction_id, kept)
    signed_part = f" and {len(kept)} signed checkpoint(s)" if kept else ""
    console.print(f"{n:,} audit events{signed_part} -> {out}", soft_wrap=True)


@audit_app.command("checkpoint")
def checkpoint(
    checkpoints: CheckpointDir = None,
    key: Annotated[
        Path | None,
        typer.Option(help="Ed25519 signing key (default: <home>/audit-signing.key, made once)"),
    ] = None,
) -> None:
    """Sign the chain's length, head hash and Merkle root (Ed25519, RFC 6962) into a new file.

    The key is kept outside the database. Refuses a chain that no longer extends the last
    checkpoint or disagrees with its head row.
    """
    from fraudloop import checkpoints as signed
    from fraudloop.clock import utcnow
    from fraudloop.storage import migrate, open_session

    settings = get_settings()
    key_file = key or signed.key_path(settings.home)
    target = checkpoints or signed.directory(settings.home)
    try:
        private, made = signed.ensure_key(key_file)
        migrate(settings.database_url)
        with open_session(settings.database_url) as session:
            cp, path = signed.make(session, target, private, utcnow())
    except FraudloopError as exc:
        _fail(exc)
    public = signed.public_key_path(key_file)
    if made:
        console.print(
            f"new signing key {key_file} (owner only); give its public key {public} to "
            "whoever verifies",
            soft_wrap=True,
        )
    where = f"-> {path}" if path else "(no new event since: the latest checkpoint stands)"
    console.print(
        f"checkpoint of {cp.n_events:,} events, head {cp.head_hash}, Merkle root "
        f"{cp.merkle_root}, {cp.created_at} {where}",
        soft_wrap=True,
    )
    console.print(f"public key (ed25519): {cp.public_key} ({public})", soft_wrap=True)


@audit_app.command("prove")
def prove(
    transaction_id: Annotated[str, typer.Argument(help="The transaction whose events to prove")],
    out: Annotated[
        Path | None, typer.Option(help="Proof file to write (default: print it)")
    ] = None,
    checkpoints: CheckpointDir = None,
    public_key: PublicKey = None,
) -> None:
    """Write an inclusion proof of a transaction's events in the latest signed checkpoint.

    Each event whole, its Merkle audit path and the checkpoint: `check-proof` verifies it from
    the file alone.
    """
    from fraudloop import checkpoints as signed
    from fraudloop.storage import migrate, open_session

    settings = get_settings()
    target = checkpoints or signed.directory(settings.home)
    try:
        key = signed.load_public_key(_public_key(public_key))
        found = signed.latest(target, key)
        if found is None:
            raise FraudloopError(
                f"--checkpoints: no checkpoint signed by this key in {target}: run "
                "`fraudloop audit checkpoint` first"
            )
        migrate(settings.database_url)
        with open_session(settings.database_url) as session:
            proof = signed.prove(session, transaction_id, found[1])
    except FraudloopError as exc:
        _fail(exc)
    text = json.dumps(proof, ensure_ascii=False, allow_nan=False, indent=2)
    if out is None:
        typer.echo(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    later = proof["events_after_checkpoint"]
    unproven = f" ({later} later event(s) wait for the next checkpoint)" if later else ""
    console.print(
        f"{len(proof['events'])} event(s) of {transaction_id} proven to checkpoint "
        f"{found[0].name}{unproven} -> {out}",
        soft_wrap=True,
    )


@audit_app.command("check-proof")
def check_proof(
    file: Annotated[Path, typer.Argument(help="A proof written by `fraudloop audit prove`")],
    public_key: Annotated[
        str, typer.Option(help="The signer's public key: its PEM file or 64 hex digits")
    ],
) -> None:
    """Check an inclusion proof from the file alone, without any database; exit 1 if it fails.

    Each event's hash from its content, its audit path to the checkpoint's Merkle root, the
    checkpoint's signature by the given key.
    """
    from fraudloop import checkpoints as signed

    try:
        key = signed.load_public_key(public_key)
        proof = json.loads(file.read_text(encoding="utf-8"))
    except FraudloopError as exc:
        _fail(exc)
    except (OSError, ValueError) as exc:
        _fail(FraudloopError(f"FILE: {file} is not a readable proof ({exc})"))
    if not isinstance(proof, dict):
        _fail(FraudloopError(f"FILE: {file} is not a proof (a JSON object)"))
    result = signed.check_proof(proof, key)
    if result.events:
        console.print(_events_table(result.events))
    if not result.ok:
        console.print(f"[red]error:[/red] {escape(result.message())}", soft_wrap=True)
        raise typer.Exit(code=1)
    console.print(result.message(), soft_wrap=True, markup=False)


def _events_table(events: tuple[dict[str, Any], ...]) -> Table:
    table = Table(title="proven events")
    for column in ("seq", "time", "event", "actor", "decision", "rationale"):
        table.add_column(column)
    for ev in events:
        row = (ev["seq"], ev["timestamp"], ev["event_type"], ev["actor"], ev["decision"])
        table.add_row(*(str(v or "") for v in row), ev.get("review_rationale") or "")
    return table


def _public_key(given: str | None) -> str:
    from fraudloop import checkpoints as signed

    if given is not None:
        return given
    public = signed.public_key_path(signed.key_path(get_settings().home))
    if not public.exists():
        raise FraudloopError(
            f"--public-key: no {public} yet; `fraudloop audit checkpoint` makes the signing key"
        )
    return str(public)


def _fail(exc: FraudloopError) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(code=2) from exc
