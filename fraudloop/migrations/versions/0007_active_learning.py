"""active learning: review selection within a daily budget

A review case remembers why it was chosen beyond the router (`selection_reason`, shown on the
task), by which strategy, and the chance it had to be drawn (`propensity`: 1 for a strategy's
deterministic pick, the inclusion probability of a random exploration pick), which the
exploration estimate weights by. The index on (queue, created_at) keeps the day's budget one
range count per scored batch, however large the store grows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("selection_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("strategy", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("propensity", sa.Float(), nullable=True))
        batch_op.create_index(
            "ix_review_tasks_queue_created", ["queue", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_review_tasks_queue_created")
        for column in ("propensity", "strategy", "selection_reason"):
            batch_op.drop_column(column)
