"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 00:58:08.554522
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=256), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("input_snapshot", sa.JSON(), nullable=True),
        sa.Column("model_version", sa.String(length=32), nullable=True),
        sa.Column("model_confidence", sa.Float(), nullable=True),
        sa.Column("explanation_tokens", sa.JSON(), nullable=True),
        sa.Column("decision", sa.String(length=32), nullable=True),
        sa.Column("review_rationale", sa.Text(), nullable=True),
        sa.Column("sla_metadata", sa.JSON(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_events_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "decisions",
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.Column("tx_datetime", sa.DateTime(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("recommendation", sa.String(length=16), nullable=False),
        sa.Column("final_decision", sa.String(length=32), nullable=True),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=True),
        sa.Column("model_version", sa.String(length=32), nullable=True),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("input_snapshot", sa.JSON(), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=True),
        sa.Column("review_rationale", sa.Text(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("transaction_id"),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_route"), ["route"], unique=False)
        batch_op.create_index(batch_op.f("ix_decisions_tx_datetime"), ["tx_datetime"], unique=False)

    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("is_fraud", sa.Integer(), nullable=False),
        sa.Column("known_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("transaction_id", "source", name="uq_labels_tx_source"),
    )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_labels_known_at"), ["known_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_labels_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=True),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("problem", sa.Text(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "review_tasks",
        sa.Column("case_id", sa.String(length=96), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sla_due_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("ls_project_id", sa.Integer(), nullable=True),
        sa.Column("ls_task_id", sa.Integer(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("case_id"),
    )
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_tasks_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_review_tasks_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "transactions",
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("tx_datetime", sa.DateTime(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("terminal_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id"),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_transactions_customer_time", ["customer_id", "tx_datetime"], unique=False
        )
        batch_op.create_index(
            "ix_transactions_terminal_time", ["terminal_id", "tx_datetime"], unique=False
        )
        batch_op.create_index("ix_transactions_time", ["tx_datetime"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_time")
        batch_op.drop_index("ix_transactions_terminal_time")
        batch_op.drop_index("ix_transactions_customer_time")

    op.drop_table("transactions")
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_tasks_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_review_tasks_status"))

    op.drop_table("review_tasks")
    op.drop_table("quarantine")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_labels_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_labels_known_at"))

    op.drop_table("labels")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_tx_datetime"))
        batch_op.drop_index(batch_op.f("ix_decisions_route"))

    op.drop_table("decisions")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_transaction_id"))

    op.drop_table("audit_events")
