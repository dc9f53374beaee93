"""alert state and the label sync watermark

`alert_state`: each sustained alert rule per scope between evaluations (when its breach began,
its last value, when it fired, resolved and was last sent) and the alerts some sink has not
taken yet (`unsent`). `label_sync_watermarks`: per Label Studio project, the newest annotation
change the label sync applied, so the next sync reads only what changed after it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("rule", sa.String(length=32), primary_key=True),
        sa.Column("scope", sa.String(length=64), primary_key=True),
        sa.Column("evaluated_at", sa.DateTime(), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("first_breach_at", sa.DateTime(), nullable=True),
        sa.Column("active_since", sa.DateTime(), nullable=True),
        sa.Column("last_fired_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(), nullable=True),
        sa.Column("unsent", sa.JSON(), nullable=False),
    )
    op.create_table(
        "label_sync_watermarks",
        sa.Column("source", sa.String(length=256), primary_key=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("synced_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("label_sync_watermarks")
    op.drop_table("alert_state")
