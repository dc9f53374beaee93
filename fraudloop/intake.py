"""Intake: files dropped in the landing folders, each read once, and the chargebacks that arrive.

A file is read when it is complete: its name ends in `.parquet`, `.csv` or `.jsonl` (write it
as `name.csv.part` and rename it when done), it is not hidden, and it has not changed for the
policy's `intake.settle_seconds`. It is known by its content hash, so the same file dropped
twice (under any name) is read once. Its rows go in chunks, and each chunk moves the file's
watermark (`intake_files.rows_done`) in the chunk's own transaction: a run that crashed halfway
is finished by the next one from there, and two runs never both take the same chunk.

Plain functions on a session; the intake flows (`flows.intake`) sequence them.
"""

import csv
import hashlib
import io
import json
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fraudloop import audit, labels
from fraudloop.decisions import quarantine
from fraudloop.frames import records as frame_records
from fraudloop.redaction import looks_sensitive
from fraudloop.schema import (
    ID_LENGTH,
    TRANSACTION_COLUMNS,
    FieldError,
    Rejection,
    naive_utc,
    printable,
)
from fraudloop.storage import ChargebackRow, Decision, IntakeFile, insert_ignore

TRANSACTIONS, CHARGEBACKS = "transactions", "chargebacks"
FORMATS = (".parquet", ".csv", ".jsonl")
PROCESSING, DONE, DUPLICATE, REJECTED = "processing", "done", "duplicate", "rejected"
CHARGEBACK_COLUMNS = ("transaction_id", "date", "reason")
REQUIRED = {
    TRANSACTIONS: ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount"),
    CHARGEBACKS: CHARGEBACK_COLUMNS,
}
ALLOWED = {TRANSACTIONS: tuple(TRANSACTION_COLUMNS), CHARGEBACKS: CHARGEBACK_COLUMNS}
REASON_LENGTH = 256  # a reason code or a short text, as card schemes send them
_NAMES_PER_QUERY = 500

Row = dict[str, Any] | Rejection  # a record, or why a line of the file could not be read


@dataclass(frozen=True)
class Landed:
    """A complete file in a landing folder, as listed (not read yet)."""

    name: str  # relative to the folder
    path: Path
    size: int
    mtime_ns: int


@dataclass
class Claim:
    """A file being read: its rows in a fixed order and the watermark to go on from."""

    kind: str
    name: str
    sha256: str
    rows: list[Row]
    start: int

    def chunks(self, size: int) -> Iterator[tuple[int, int]]:
        """[start, end) of each chunk still to do."""
        for start in range(self.start, len(self.rows), size):
            yield start, min(start + size, len(self.rows))


class Taken(RuntimeError):
    """Another run moved this file's watermark first: the chunk is theirs, leave the file."""


def landed(folder: Path, settle_seconds: float, wall_clock: float | None = None) -> list[Landed]:
    """Complete files in a landing folder and its subfolders, oldest first.

    `wall_clock` is the file system's "now" (`time.time()`), never a run's simulated clock."""
    if not folder.is_dir():
        return []
    now = time.time() if wall_clock is None else wall_clock
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if path.suffix not in FORMATS or any(p.startswith(".") for p in relative.parts):
            continue
        try:
            info = path.stat()
        except FileNotFoundError:  # moved away since it was listed
            continue
        if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= settle_seconds:
            found.append(Landed(relative.as_posix(), path, info.st_size, info.st_mtime_ns))
    return sorted(found, key=lambda f: (f.mtime_ns, f.name))


def unseen(session: Session, kind: str, files: Sequence[Landed]) -> list[Landed]:
    """Files not finished under the same name, size and time: only those are read and hashed."""
    finished: set[tuple[str, int, int]] = set()
    names = [f.name for f in files]
    for i in range(0, len(names), _NAMES_PER_QUERY):
        stmt = select(IntakeFile.name, IntakeFile.size, IntakeFile.mtime_ns).where(
            IntakeFile.kind == kind,
            IntakeFile.status != PROCESSING,
            IntakeFile.name.in_(names[i : i + _NAMES_PER_QUERY]),
        )
        finished.update((n, s, m) for n, s, m in session.execute(stmt))
    return [f for f in files if (f.name, f.size, f.mtime_ns) not in finished]


def take(session: Session, kind: str, file: Landed, now: datetime, max_bytes: int) -> Claim | None:
    """The file's rows from its watermark, or None when there is nothing to read: read before
    (under this name or another), or unreadable as a whole (quarantined with the reason)."""
    data = file.path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    same = list(
        session.scalars(
            select(IntakeFile)
            .where(IntakeFile.kind == kind, IntakeFile.sha256 == sha)
            .order_by(IntakeFile.id)
        )
    )
    ours = next((r for r in same if r.name == file.name), None)
    if ours is not None:
        ours.size, ours.mtime_ns = file.size, file.mtime_ns  # touched: not hashed again
        if ours.status != PROCESSING:
            return None
        ours.note = f"resumed from row {ours.rows_done} at {now.isoformat()}"
        return Claim(kind, file.name, sha, parse(kind, file.name, data).rows, ours.rows_done)
    row = {
        "kind": kind,
        "name": file.name,
        "sha256": sha,
        "size": file.size,
        "mtime_ns": file.mtime_ns,
        "taken_at": now,
        "rows": 0,
        "rows_done": 0,
    }
    if same:
        _record(session, row, DUPLICATE, now, f"same content as {same[0].name}")
        return None
    parsed = parse(kind, file.name, data)
    if parsed.problem is not None:
        _record(session, row, REJECTED, now, parsed.problem)
        whole = Rejection(
            transaction_id=None,
            field="<file>",
            problem=f"{kind} file {file.name}: {parsed.problem}",
            record={"file": file.name, "kind": kind, "sha256": sha, "bytes": len(data)},
        )
        quarantine(session, [whole], now, max_bytes)
        return None
    row["rows"] = len(parsed.rows)
    if not parsed.rows:
        _record(session, row, DONE, now, "no rows")
        return None
    _record(session, row, PROCESSING, None, None)
    return Claim(kind, file.name, sha, parsed.rows, _watermark(session, kind, file.name, sha))


def advance(session: Session, claim: Claim, start: int, end: int, now: datetime) -> None:
    """Move the file's watermark from `start` to `end` in the caller's (the chunk's)
    transaction, first thing in it: raises `Taken` when another run got there first."""
    finished = end >= len(claim.rows)
    moved = session.execute(
        update(IntakeFile)
        .where(
            IntakeFile.kind == claim.kind,
            IntakeFile.name == claim.name,
            IntakeFile.sha256 == claim.sha256,
            IntakeFile.status == PROCESSING,
            IntakeFile.rows_done == start,
        )
        .values(
            rows_done=end,
            status=DONE if finished else PROCESSING,
            finished_at=now if finished else None,
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise Taken(f"{claim.kind} file {claim.name}: rows from {start} taken by another run")


def split(rows: Sequence[Row]) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """A chunk's records, and the lines that could not be read (to quarantine)."""
    records = [r for r in rows if isinstance(r, dict)]
    return records, [r for r in rows if isinstance(r, Rejection)]


@dataclass
class Parsed:
    rows: list[Row]
    problem: str | None = None  # the file as a whole cannot be read


def parse(kind: str, name: str, data: bytes) -> Parsed:
    """A file's rows in the project's schema, in a fixed order (the watermark counts them):
    transactions by time, then id. A bad line is a `Rejection`; a bad file is a `problem`."""
    suffix = Path(name).suffix
    try:
        if suffix == ".parquet":
            parsed = _parquet(kind, data)
        else:
            text = data.decode("utf-8-sig")
            parsed = _csv(kind, name, text) if suffix == ".csv" else _jsonl(name, text)
    except UnicodeDecodeError as exc:
        return Parsed([], f"not UTF-8 text: {exc}")
    if kind == TRANSACTIONS and parsed.problem is None:
        parsed.rows = sorted(parsed.rows, key=_time_order)
    return parsed


def _parquet(kind: str, data: bytes) -> Parsed:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        return Parsed([], f"not a readable parquet file: {exc}")
    problem = _columns_problem(kind, table.column_names)
    if problem is not None:
        return Parsed([], problem)
    rows: list[Row] = [
        {k: None if _missing(v) else v for k, v in r.items()}
        for r in frame_records(table.to_pandas())
    ]
    return Parsed(rows)


def _csv(kind: str, name: str, text: str) -> Parsed:
    reader = csv.DictReader(io.StringIO(text))
    problem = _columns_problem(kind, reader.fieldnames or [])
    if problem is not None:
        return Parsed([], problem)
    rows: list[Row] = []
    for record in reader:
        if None in record:  # more values than the header has names
            rows.append(_unreadable(name, reader.line_num, "more values than columns", record))
        else:
            rows.append({k: _csv_value(k, v) for k, v in record.items()})
    return Parsed(rows)


def _jsonl(name: str, text: str) -> Parsed:
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            rows.append(_unreadable(name, number, f"not JSON: {exc}", {"text": line}))
            continue
        if isinstance(record, dict):
            rows.append(record)
        else:
            rows.append(_unreadable(name, number, "not a JSON object", {"text": line}))
    return Parsed(rows)


def _columns_problem(kind: str, names: Sequence[str]) -> str | None:
    unknown = sorted(set(names) - set(ALLOWED[kind]))
    missing = [c for c in REQUIRED[kind] if c not in names]
    problems = [f"unknown columns {', '.join(unknown)}"] if unknown else []
    problems += [f"missing columns {', '.join(missing)}"] if missing else []
    if not problems:
        return None
    return f"{'; '.join(problems)} (the {kind} schema: {', '.join(ALLOWED[kind])})"


def _csv_value(name: str, value: str | None) -> Any:
    """CSV holds text only: an empty cell is missing and the amount a number when it reads as
    one (otherwise the text, for the schema to refuse with its reason)."""
    if value is None or value == "":
        return None
    if name == "amount":
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _missing(value: Any) -> bool:
    return isinstance(value, float) and bool(np.isnan(value))


def _unreadable(name: str, line: int, problem: str, record: Mapping[Any, Any]) -> Rejection:
    kept = {str(k): v for k, v in record.items()}
    return Rejection(
        transaction_id=None,
        field=f"<line {line}>",
        problem=problem,
        record={"file": name, "line": line, **kept},
    )


def _time_order(row: Row) -> tuple[int, str, str]:
    """Readable records by time then id; the rest after them, in file order (stable sort)."""
    if isinstance(row, Rejection):
        return (1, "", "")
    at = row.get("tx_datetime")
    if isinstance(at, datetime):
        at = at.isoformat()
    if not isinstance(at, str):
        return (1, "", "")
    return (0, at, str(row.get("transaction_id")))


def _record(
    session: Session, row: dict[str, Any], status: str, finished: datetime | None, note: str | None
) -> None:
    insert_ignore(
        session, IntakeFile, [row | {"status": status, "finished_at": finished, "note": note}]
    )


def _watermark(session: Session, kind: str, name: str, sha: str) -> int:
    """Where the file stands: 0 when this run recorded it, more if a concurrent run did first."""
    stmt = select(IntakeFile.rows_done).where(
        IntakeFile.kind == kind, IntakeFile.name == name, IntakeFile.sha256 == sha
    )
    return int(session.scalar(stmt) or 0)


# --- chargebacks: from landing files and `POST /v1/chargebacks` ---------------------------


class Chargeback(BaseModel):
    """One chargeback as the card network reports it; unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: Annotated[StrictStr, Field(min_length=1, max_length=ID_LENGTH)]
    date: datetime
    reason: Annotated[StrictStr, Field(min_length=1, max_length=REASON_LENGTH)]

    @field_validator("date")
    @classmethod
    def _naive_utc(cls, value: datetime) -> datetime:
        return naive_utc(value)

    @field_validator("transaction_id", "reason")
    @classmethod
    def _storable(cls, value: str) -> str:
        """Kept unredacted (the reason in the audit trail): text every store takes, and no
        personal data (a card number pasted into the reason)."""
        if "\x00" in value or printable(value) != value:
            raise ValueError("contains a NUL byte or a lone surrogate (not UTF-8 text)")
        if not value.strip():
            raise ValueError("must not be blank")
        if looks_sensitive(value):
            raise ValueError("looks like a card number, e-mail or IP address; keep it out")
        return value


@dataclass
class ChargebackResult:
    recorded: int = 0  # new: a label and an audit event each
    repeated: int = 0  # recorded before (a retry, or the same chargeback twice)
    quarantined: list[Rejection] = field(default_factory=list)


UNKNOWN_TRANSACTION = "unknown transaction: no decision has this id (quarantined, not learned)"


def validate_chargeback(record: Mapping[str, Any]) -> Chargeback | Rejection:
    try:
        return Chargeback.model_validate(dict(record))
    except ValidationError as exc:
        errors = [  # text any store and JSON encoder takes: it is quarantined and answered
            FieldError(
                field=printable("chargeback." + (".".join(str(p) for p in e["loc"]) or "<record>")),
                problem="unknown field"
                if e["type"] == "extra_forbidden"
                else printable(str(e["msg"]).removeprefix("Value error, ")),
            )
            for e in exc.errors()
        ]
        return _chargeback_rejection(record, errors)


def record_chargebacks(
    session: Session,
    records: Sequence[Mapping[str, Any]],
    now: datetime,
    source: str,
    actor: str,
    max_bytes: int,
) -> ChargebackResult:
    """Each chargeback once: its row, a fraud label known from `now` (when it arrived), and an
    audit event; one for a transaction never decided here, or dated after it arrived, is
    quarantined with the reason. In the caller's transaction."""
    result = ChargebackResult()
    valid: dict[str, Chargeback] = {}
    for record in records:
        checked = validate_chargeback(record)
        if isinstance(checked, Rejection):
            result.quarantined.append(checked)
        elif checked.transaction_id in valid:
            result.repeated += 1
        else:
            valid[checked.transaction_id] = checked
    ids = list(valid)
    decided = set(
        session.scalars(select(Decision.transaction_id).where(Decision.transaction_id.in_(ids)))
    )
    before = set(
        session.scalars(
            select(ChargebackRow.transaction_id).where(ChargebackRow.transaction_id.in_(ids))
        )
    )
    fresh = []
    for c in valid.values():
        problem = _chargeback_problem(c, decided, now)
        if problem is not None:
            result.quarantined.append(_chargeback_rejection(c.model_dump(mode="json"), [problem]))
        elif c.transaction_id in before:
            result.repeated += 1
        else:
            fresh.append(c)
    result.recorded = _store_chargebacks(session, fresh, now, source, actor)
    quarantine(session, result.quarantined, now, max_bytes)
    audit.append(session, [_chargeback_event(c, now, source, actor) for c in fresh])
    return result


def _chargeback_problem(c: Chargeback, decided: set[str], now: datetime) -> FieldError | None:
    if c.transaction_id not in decided:
        return FieldError(field="chargeback.transaction_id", problem=UNKNOWN_TRANSACTION)
    if c.date > now:
        return FieldError(
            field="chargeback.date", problem=f"after the time it arrived ({now.isoformat()})"
        )
    return None


def _store_chargebacks(
    session: Session, fresh: list[Chargeback], now: datetime, source: str, actor: str
) -> int:
    rows = [
        {
            "transaction_id": c.transaction_id,
            "chargeback_date": c.date,
            "reason": c.reason,
            "received_at": now,
            "source": source,
            "actor": actor,
        }
        for c in fresh
    ]
    new = insert_ignore(session, ChargebackRow, rows)
    labels.add_labels(
        session,
        [
            {
                "transaction_id": c.transaction_id,
                "is_fraud": 1,
                "known_at": now,
                "source": "chargeback",
                "actor": actor,
            }
            for c in fresh
        ],
    )
    return new


def _chargeback_event(c: Chargeback, now: datetime, source: str, actor: str) -> dict[str, Any]:
    return audit.event(
        f"chargeback:{c.transaction_id}",
        "chargeback",
        actor,
        now,
        transaction_id=c.transaction_id,
        chargeback_date=c.date.isoformat(),
        reason=c.reason,
        source=source,
    )


def _chargeback_rejection(record: Mapping[str, Any], errors: list[FieldError]) -> Rejection:
    tx_id = record.get("transaction_id")
    return Rejection(
        transaction_id=printable(str(tx_id)) if tx_id is not None else None,
        field=errors[0].field,
        problem=errors[0].problem,
        record=dict(record),
        errors=errors,
    )
