"""quarantine content hash

A rejected record is kept once: `quarantine.content_hash` (SHA-256 of the record as received,
its field and problem) is unique, and a repeat is skipped. Rows stored before keep NULL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 10:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("uq_quarantine_content_hash", ["content_hash"])


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_constraint("uq_quarantine_content_hash", type_="unique")
        batch.drop_column("content_hash")
