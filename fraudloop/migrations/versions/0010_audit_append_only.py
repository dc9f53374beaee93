"""audit events append-only

Triggers refuse UPDATE and DELETE on `audit_events` (and TRUNCATE on PostgreSQL), so a bug or an
account with only write rights cannot rewrite the trail; someone with DDL rights can still drop
them, which `fraudloop audit verify` and the signed checkpoints are there to catch. Both
databases get them: SQLite's are lost if a later migration rebuilds the table in batch mode, so
such a migration must create them again (`_SQLITE` here).

The chain's head row also counts its events (`n_events`), so `verify` checks the head against
the chain's length as well as its last hash; seeded here from the events already stored.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_REFUSED = "audit_events is append-only"
_PG = (
    f"""
    CREATE FUNCTION fraudloop_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{_REFUSED}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION fraudloop_audit_append_only()
    """,
    """
    CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION fraudloop_audit_append_only()
    """,
)
_PG_DROP = (
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events",
    "DROP FUNCTION IF EXISTS fraudloop_audit_append_only()",
)
_SQLITE = tuple(
    f"""
    CREATE TRIGGER audit_events_no_{op_name.lower()} BEFORE {op_name} ON audit_events
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}: {op_name} refused'); END
    """
    for op_name in ("UPDATE", "DELETE")
)
_SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS audit_events_no_update",
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
)


def upgrade() -> None:
    with op.batch_alter_table("audit_chain_head") as batch_op:
        batch_op.add_column(sa.Column("n_events", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE audit_chain_head SET n_events = (SELECT count(*) FROM audit_events)")
    _run(_SQLITE if _sqlite() else _PG)


def downgrade() -> None:
    _run(_SQLITE_DROP if _sqlite() else _PG_DROP)
    with op.batch_alter_table("audit_chain_head") as batch_op:
        batch_op.drop_column("n_events")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _run(statements: tuple[str, ...]) -> None:
    for statement in statements:
        op.execute(statement)
