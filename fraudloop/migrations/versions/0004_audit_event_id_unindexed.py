"""audit event_id unindexed

An audit event's `event_id` is the uuid5 of its unique idempotency key, so it is unique with
the key; nothing looks events up by it. Its unique index only cost writes: a random key, it
dirtied most of its pages on every batch (~5 MB of SQLite WAL per 10,000 decisions at 100,000
events, growing with the store).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 05:00:00.000000
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# SQLite's unnamed constraint gets this name when batch mode reflects the table; PostgreSQL
# named it itself
_NAMING = {"uq": "%(table_name)s_%(column_0_name)s_key"}
_NAME = "audit_events_event_id_key"


def upgrade() -> None:
    with op.batch_alter_table("audit_events", naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint(_NAME, type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.create_unique_constraint(_NAME, ["event_id"])
