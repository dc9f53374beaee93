"""review tiers

Review cases learn where they came from (`parent_case_id`), who decided them and how (for the
second sign-off), why they left their queue, and what must still be mirrored to Label Studio
(`ls_patch`); reviewers get roles.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_case_id", sa.String(length=96), nullable=True))
        batch_op.add_column(sa.Column("decision", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("reviewer", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("annotation_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("status_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("ls_patch", sa.JSON(), nullable=True))
        batch_op.create_index("ix_review_tasks_queue_status", ["queue", "status"], unique=False)
    op.create_table(
        "reviewers",
        sa.Column("email", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("ls_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email"),
    )


def downgrade() -> None:
    op.drop_table("reviewers")
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_review_tasks_queue_status")
        for column in (
            "ls_patch",
            "status_reason",
            "annotation_id",
            "reviewed_at",
            "reviewer",
            "decision",
            "parent_case_id",
        ):
            batch_op.drop_column(column)
