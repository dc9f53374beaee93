"""review exit code

Why a case left its queue becomes a typed column (`review_tasks.exit_code`): paging read it back
from the free-text `status_reason` prefix. Existing rows take it from that prefix.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_CODES = ("sla_breach", "reviewer_escalation", "signoff_disagreement", "tier3")


def upgrade() -> None:
    op.add_column("review_tasks", sa.Column("exit_code", sa.String(length=32), nullable=True))
    tasks = sa.table(
        "review_tasks",
        sa.column("status", sa.String),
        sa.column("status_reason", sa.Text),
        sa.column("exit_code", sa.String),
    )
    for code in _CODES:
        op.execute(
            tasks.update()
            .where(tasks.c.status == "escalated", tasks.c.status_reason.like(f"{code}:%"))
            .values(exit_code=code)
        )


def downgrade() -> None:
    with op.batch_alter_table("review_tasks") as batch:
        batch.drop_column("exit_code")
