"""Signed checkpoints of the audit chain, and inclusion proofs against them: Certificate
Transparency's signed tree heads, at this project's size.

A checkpoint signs (Ed25519) the chain's length, its last hash, the RFC 6962 Merkle root over
the events' hashes and the time. The private key lives in the state dir, never in the database,
and each checkpoint is a file of its own, written once: whoever rewrites the database cannot
rewrite what was signed, so a chain cut short, or rewritten back to a checkpoint, no longer
matches it (`verify`). An inclusion proof carries one transaction's events, their Merkle audit
paths and the checkpoint: `check_proof` needs nothing else, no database and no other event.
"""

import dataclasses
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.orm import Session

from fraudloop import audit, merkle
from fraudloop.errors import FraudloopError

KEY_FILE = "audit-signing.key"  # in the state dir; its public key beside it, `.pub`
DIRECTORY = "checkpoints"  # in the state dir: one JSON file per checkpoint
VERSION = 1
PROOF_KIND = "fraudloop audit inclusion proof"
_DOMAIN = b"fraudloop audit checkpoint v1\n"  # this signature can never pass for another message
_HEX_KEY_LENGTH = 64  # a raw Ed25519 public key, in hex


class Checkpoint(BaseModel):
    """What was signed, and the signature (hex). `public_key` names the signer; a verifier
    checks against the key it holds, never the one a checkpoint names."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    version: int
    n_events: int
    head_hash: str
    merkle_root: str
    created_at: str  # ISO-8601, UTC
    public_key: str  # raw Ed25519 public key, hex
    signature: str = ""

    def message(self) -> bytes:
        fields = self.model_dump(exclude={"signature"})
        return _DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def anchor(self, name: str) -> audit.Anchor:
        return audit.Anchor(self.n_events, self.head_hash, self.merkle_root, name)


@dataclass(frozen=True)
class ProofCheck:
    """What `check_proof` found: `events` are the proven ones, `problems` why it fails."""

    transaction_id: str | None
    checkpoint: Checkpoint | None
    events: tuple[dict[str, Any], ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.events)

    def message(self) -> str:
        if not self.ok or self.checkpoint is None:
            return "proof fails: " + "; ".join(self.problems or ("it holds no event",))
        cp = self.checkpoint
        return (
            f"proof holds: {len(self.events)} event(s) of {self.transaction_id} are in the audit "
            f"chain as signed at {cp.created_at} ({cp.n_events:,} events, Merkle root "
            f"{cp.merkle_root})"
        )


def key_path(home: Path) -> Path:
    return home / KEY_FILE


def public_key_path(key_file: Path) -> Path:
    return key_file.with_suffix(".pub")


def directory(home: Path) -> Path:
    return home / DIRECTORY


def ensure_key(key_file: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The signing key, made owner-only (0600) on first use with its public key beside it (PEM);
    True when made now."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key, made = load_private_key(key_file), False
    else:
        key, made = Ed25519PrivateKey.generate(), True
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
    public = public_key_path(key_file)
    if not public.exists():
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return key, made


def load_private_key(key_file: Path) -> Ed25519PrivateKey:
    """The signing key; refuses a file others may read (whoever reads it can forge checkpoints)."""
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        raise FraudloopError(
            f"{key_file} is readable by others (mode {mode:o}): `chmod 600 {key_file}`, and "
            "treat checkpoints signed since as untrusted"
        )
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except ValueError as exc:
        raise FraudloopError(f"{key_file} is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise FraudloopError(f"{key_file} is not an Ed25519 key")
    return key


def load_public_key(spec: str | Path) -> Ed25519PublicKey:
    """A public key from a PEM file (`audit-signing.pub`) or its 64 hex digits."""
    text = str(spec).strip()
    if len(text) == _HEX_KEY_LENGTH and all(c in "0123456789abcdefABCDEF" for c in text):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    path = Path(text)
    if not path.is_file():
        raise FraudloopError(
            f"--public-key: {text} is neither a file nor an Ed25519 public key in hex; use the "
            f"{public_key_path(Path(KEY_FILE)).name} printed by `fraudloop audit checkpoint`"
        )
    data = path.read_bytes()
    if len(data.strip()) == _HEX_KEY_LENGTH:
        return load_public_key(data.decode().strip())
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise FraudloopError(f"--public-key: {path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise FraudloopError(f"--public-key: {path} is not an Ed25519 public key")
    return key


def public_hex(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign(
    key: Ed25519PrivateKey, n_events: int, head_hash: str, merkle_root: str, at: datetime
) -> Checkpoint:
    unsigned = Checkpoint(
        version=VERSION,
        n_events=n_events,
        head_hash=head_hash,
        merkle_root=merkle_root,
        created_at=_naive_utc(at).isoformat(timespec="seconds") + "Z",
        public_key=public_hex(key.public_key()),
    )
    signature = key.sign(unsigned.message()).hex()
    return unsigned.model_copy(update={"signature": signature})


def signature_problem(checkpoint: Checkpoint, key: Ed25519PublicKey) -> str | None:
    """Why this checkpoint is not one `key` signed, or None."""
    if checkpoint.public_key != public_hex(key):
        return f"signed by another key ({checkpoint.public_key[:16]}...), not the one given"
    try:
        key.verify(bytes.fromhex(checkpoint.signature), checkpoint.message())
    except (InvalidSignature, ValueError):
        return "its signature does not verify: its content was changed after signing"
    return None


def write(target: Path, checkpoint: Checkpoint) -> Path:
    """A new file, never an existing one rewritten; read-only once written."""
    target.mkdir(parents=True, exist_ok=True)
    stamp = checkpoint.created_at.replace(":", "").replace("-", "")
    path = target / f"{checkpoint.n_events:012d}-{stamp}.json"
    with path.open("x", encoding="utf-8") as out:
        out.write(checkpoint.model_dump_json(indent=2) + "\n")
    path.chmod(0o444)
    return path


def read(target: Path) -> list[tuple[Path, Checkpoint | None, str | None]]:
    """Every JSON file of a checkpoint directory, in name (= chain length) order, parsed, or
    with why it could not be."""
    if not target.is_dir():
        raise FraudloopError(
            f"--checkpoints: {target} is not a directory; `fraudloop audit checkpoint` makes "
            f"one (default <home>/{DIRECTORY})"
        )
    found: list[tuple[Path, Checkpoint | None, str | None]] = []
    for path in sorted(target.glob("*.json")):
        try:
            found.append((path, Checkpoint.model_validate_json(path.read_bytes()), None))
        except ValidationError as exc:
            found.append((path, None, f"not a checkpoint ({exc.errors()[0]['msg']})"))
    return found


def signed(target: Path, key: Ed25519PublicKey) -> tuple[list[audit.Anchor], list[audit.Finding]]:
    """The checkpoints `key` signed, as anchors for `audit.verify`; every other file (unreadable,
    changed, another key's) or an empty directory as a finding."""
    anchors, findings = [], []
    for path, checkpoint, unreadable in read(target):
        problem = unreadable if checkpoint is None else signature_problem(checkpoint, key)
        if checkpoint is None or problem is not None:
            findings.append(audit.Finding("checkpoint", f"{path.name}: {problem}"))
        else:
            anchors.append(checkpoint.anchor(path.name))
    if not anchors and not findings:
        findings.append(audit.Finding("checkpoint", f"no checkpoint in {target}"))
    return anchors, findings


def verify(session: Session, target: Path, key: Ed25519PublicKey) -> audit.VerifyResult:
    """`audit.verify` against every checkpoint in `target` signed by `key`."""
    anchors, findings = signed(target, key)
    result = audit.verify(session, anchors)
    return dataclasses.replace(
        result, ok=result.ok and not findings, findings=(*findings, *result.findings)
    )


def latest(target: Path, key: Ed25519PublicKey) -> tuple[Path, Checkpoint] | None:
    """The longest checkpoint `key` signed in `target` (None: there is none)."""
    if not target.is_dir():
        return None
    good = [
        (path, cp)
        for path, cp, _ in read(target)
        if cp is not None and signature_problem(cp, key) is None
    ]
    return max(good, key=lambda item: (item[1].n_events, item[1].created_at), default=None)


def make(
    session: Session, target: Path, key: Ed25519PrivateKey, now: datetime
) -> tuple[Checkpoint, Path | None]:
    """Sign the chain as it stands and write the checkpoint; if nothing was appended since the
    latest one, that one and no path. Refuses a chain that no longer extends the latest
    checkpoint or disagrees with its head row: signing it would launder the tampering."""
    previous = latest(target, key.public_key())
    n_events, head_hash, root = tree_head(session, previous[1] if previous else None)
    if previous is not None and (n_events, root) == (previous[1].n_events, previous[1].merkle_root):
        return previous[1], None
    checkpoint = sign(key, n_events, head_hash, root, now)
    return checkpoint, write(target, checkpoint)


def tree_head(session: Session, previous: Checkpoint | None = None) -> tuple[int, str, str]:
    """The chain's length, last hash and Merkle root (hex), read once in order. Links, the head
    row and the previous checkpoint are checked on the way (contents are `audit.verify`'s)."""
    tree = merkle.RootBuilder()
    last = audit.GENESIS
    at = previous.n_events if previous else -1
    if at == 0:
        _extends(previous, 0, last, tree)
    for seq, prev_hash, event_hash in audit.chain_hashes(session):
        if prev_hash != last:
            raise _refused(f"the chain breaks just before event seq {seq}")
        tree.add(merkle.leaf_hash(bytes.fromhex(event_hash)))
        last = event_hash
        if tree.size == at:
            _extends(previous, tree.size, last, tree)
    if tree.size < at:
        raise _refused(f"the chain has {tree.size:,} events, the last checkpoint signed {at:,}")
    problems = audit.head_findings(audit.chain_head(session), tree.size, last)
    if problems:
        raise _refused(problems[0].detail)
    return tree.size, last, tree.root().hex()


def _extends(previous: Checkpoint | None, size: int, last: str, tree: merkle.RootBuilder) -> None:
    if previous is not None and (last, tree.root().hex()) != (
        previous.head_hash,
        previous.merkle_root,
    ):
        raise _refused(f"event {size:,} is not the one the last checkpoint signed")


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def _refused(why: str) -> FraudloopError:
    return FraudloopError(
        f"refusing to sign the audit chain: {why}; run `fraudloop audit verify --checkpoints`"
    )


def prove(session: Session, transaction_id: str, checkpoint: Checkpoint) -> dict[str, Any]:
    """An inclusion proof of the transaction's events up to `checkpoint`: each event whole,
    its leaf index and audit path, and the signed checkpoint."""
    wanted = {record["seq"]: record for record in audit.records(session, transaction_id)}
    if not wanted:
        raise FraudloopError(f"transaction {transaction_id!r} has no audit event: check the id")
    hashes: list[bytes] = []
    index_of: dict[int, int] = {}
    for seq, _, event_hash in audit.chain_hashes(session):
        if len(hashes) == checkpoint.n_events:
            break
        if seq in wanted:
            index_of[seq] = len(hashes)
        hashes.append(bytes.fromhex(event_hash))
    if not index_of:
        raise FraudloopError(
            f"transaction {transaction_id!r}: its events came after the last checkpoint "
            f"({checkpoint.n_events:,} events); run `fraudloop audit checkpoint` first"
        )
    tree = merkle.levels(hashes)
    if len(hashes) != checkpoint.n_events or tree[-1][0].hex() != checkpoint.merkle_root:
        raise FraudloopError(
            "the audit chain no longer matches the last checkpoint: run "
            "`fraudloop audit verify --checkpoints` before proving anything from it"
        )
    events = [
        {
            "index": index,
            "audit_path": [node.hex() for node in merkle.audit_path(tree, index)],
            "event": wanted[seq],
        }
        for seq, index in index_of.items()
    ]
    return {
        "kind": PROOF_KIND,
        "version": VERSION,
        "transaction_id": transaction_id,
        "checkpoint": checkpoint.model_dump(),
        "events": events,
        "events_after_checkpoint": len(wanted) - len(events),
    }


def check_proof(proof: Mapping[str, Any], key: Ed25519PublicKey) -> ProofCheck:
    """Check an inclusion proof from its own content: each event's hash recomputed from what
    it says, its audit path up to the checkpoint's root, the checkpoint's signature by `key`."""
    transaction_id = proof.get("transaction_id")
    try:
        checkpoint = Checkpoint.model_validate(proof.get("checkpoint"))
    except ValidationError:
        return ProofCheck(transaction_id, None, problems=("the proof holds no valid checkpoint",))
    problems = []
    signature = signature_problem(checkpoint, key)
    if signature is not None:
        problems.append(f"checkpoint: {signature}")
    proven = []
    for n, item in enumerate(proof.get("events") or []):
        try:
            problem = _event_problem(item, checkpoint, transaction_id)
        except (KeyError, TypeError, ValueError) as exc:
            problem = f"event #{n + 1} is malformed ({type(exc).__name__}: {exc})"
        if problem is None:
            proven.append(item["event"])
        else:
            problems.append(problem)
    if not proven and not problems:
        problems.append("it holds no event")
    return ProofCheck(transaction_id, checkpoint, tuple(proven), tuple(problems))


def _event_problem(
    item: Mapping[str, Any], checkpoint: Checkpoint, transaction_id: str | None
) -> str | None:
    record = item["event"]
    name = f"event {record['event_id']}"
    content = {field: record[field] for field in audit.CONTENT_FIELDS}
    if audit.chain_hash(record["prev_hash"], content) != record["hash"]:
        return f"{name}: what it says no longer matches its hash"
    if record["transaction_id"] != transaction_id:
        return f"{name} is of transaction {record['transaction_id']}, not {transaction_id}"
    leaf = merkle.leaf_hash(bytes.fromhex(record["hash"]))
    path = [bytes.fromhex(node) for node in item["audit_path"]]
    root = merkle.root_from_path(leaf, int(item["index"]), checkpoint.n_events, path)
    if root is None or root.hex() != checkpoint.merkle_root:
        return f"{name}: its audit path does not lead to the checkpoint's Merkle root"
    return None
