"""audit chain head

The chain's head gets a row of its own (`audit_chain_head`): an append moves it from the head it
read to its last event, or fails. That keeps two writers from forking the chain, as the unique
index on `audit_events.prev_hash` did, at one row per append instead of one random index key per
event (the index dirtied most of its pages on every batch, more as the store grew).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 05:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_GENESIS = "0" * 64  # `fraudloop.audit.GENESIS`: the head of an empty chain


def upgrade() -> None:
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    last = op.get_bind().scalar(sa.text("SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1"))
    op.bulk_insert(head, [{"id": 1, "hash": last or _GENESIS}])
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_constraint("uq_audit_events_prev_hash", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.create_unique_constraint("uq_audit_events_prev_hash", ["prev_hash"])
    op.drop_table("audit_chain_head")
