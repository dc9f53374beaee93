"""intake: processed files and their watermark; chargebacks as they arrived

`intake_files`: each file taken from a landing folder, by content hash (the same file dropped
twice is read once), with `rows_done`, the watermark a crashed run is finished from.
`chargebacks`: one per transaction, with its date, reason and where it came from.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intake_files",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.UniqueConstraint("kind", "name", "sha256", name="uq_intake_files_kind_name_sha256"),
    )
    op.create_index("ix_intake_files_kind_sha256", "intake_files", ["kind", "sha256"])
    op.create_table(
        "chargebacks",
        sa.Column("transaction_id", sa.String(length=64), primary_key=True),
        sa.Column("chargeback_date", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
    )
    op.create_index("ix_chargebacks_received_at", "chargebacks", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_chargebacks_received_at", table_name="chargebacks")
    op.drop_table("chargebacks")
    op.drop_index("ix_intake_files_kind_sha256", table_name="intake_files")
    op.drop_table("intake_files")
