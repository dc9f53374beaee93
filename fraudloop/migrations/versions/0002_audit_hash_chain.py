"""audit hash chain

Adds `prev_hash` and `hash` to audit_events and chains the events already stored, in seq order
(the chain starts with this migration: edits made before it cannot be detected).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00.000000
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 2_000


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    _chain_existing_events(op.get_bind())
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_audit_events_prev_hash", ["prev_hash"])


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_events_prev_hash", type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")


def _chain_existing_events(conn: sa.Connection) -> None:
    from fraudloop.audit import CONTENT_FIELDS, GENESIS, chain_hash

    types: dict[str, Any] = {
        "timestamp": sa.DateTime(),
        "model_confidence": sa.Float(),
        **dict.fromkeys(
            ("input_snapshot", "explanation_tokens", "sla_metadata", "details"), sa.JSON()
        ),
    }
    events = sa.table(
        "audit_events",
        sa.column("seq", sa.Integer()),
        *(sa.column(f, types.get(f, sa.String())) for f in CONTENT_FIELDS),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    cols = [events.c.seq, *(events.c[f] for f in CONTENT_FIELDS)]
    rows = conn.execute(sa.select(*cols).order_by(events.c.seq)).all()  # a one-off pass
    prev, updates = GENESIS, []
    for row in rows:
        content = {f: getattr(row, f) for f in CONTENT_FIELDS}
        content["timestamp"] = content["timestamp"].isoformat()
        digest = chain_hash(prev, content)
        updates.append({"b_seq": row.seq, "b_prev": prev, "b_hash": digest})
        prev = digest
    stmt = (
        sa.update(events)
        .where(events.c.seq == sa.bindparam("b_seq"))
        .values(prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash"))
    )
    for start in range(0, len(updates), _BATCH):
        conn.execute(stmt, updates[start : start + _BATCH])
