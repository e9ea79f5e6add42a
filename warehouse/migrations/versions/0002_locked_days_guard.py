"""Locked days never change: the database refuses writes to rows of a locked close day.

Statement-level triggers with transition tables (one check per statement, COPY included) on every
table that holds per-day figures, and a row trigger that keeps a locked close record as it is.

Revision ID: 0002
Revises: 0001
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# table -> the column holding its close day
GUARDED = {
    "transactions": "close_date",
    "transfers": "close_date",
    "positions": "date",
    "breaks": "date",
    "recon_results": "date",
    "pnl_disposals": "date",
    "pnl_daily": "date",
}


def _function(table: str, column: str, rows: str) -> str:
    return f"""
CREATE FUNCTION coinfrs_guard_{table}_{rows}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE hit record;
BEGIN
    SELECT r.entity_id, r.{column} AS day INTO hit
    FROM {rows}_rows r JOIN closes c ON c.entity_id = r.entity_id AND c.date = r.{column} AND c.locked
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'close day % of entity % is locked: {table} rows of a locked day never change', hit.day, hit.entity_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    for table, column in GUARDED.items():
        op.execute(_function(table, column, "new"))
        op.execute(_function(table, column, "old"))
        op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_insert AFTER INSERT ON {table}
                       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_new()""")
        op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_update AFTER UPDATE ON {table}
                       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_old()""")
        op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_delete AFTER DELETE ON {table}
                       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_old()""")
    op.execute("""
CREATE FUNCTION coinfrs_guard_closes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.locked THEN
        RAISE EXCEPTION 'close day % of entity % is locked and never changes', OLD.date, OLD.entity_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$;
""")
    op.execute("""CREATE TRIGGER coinfrs_locked_closes BEFORE UPDATE OR DELETE ON closes
                  FOR EACH ROW EXECUTE FUNCTION coinfrs_guard_closes()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS coinfrs_locked_closes ON closes")
    op.execute("DROP FUNCTION IF EXISTS coinfrs_guard_closes()")
    for table in GUARDED:
        for action in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS coinfrs_locked_{table}_{action} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS coinfrs_guard_{table}_new()")
        op.execute(f"DROP FUNCTION IF EXISTS coinfrs_guard_{table}_old()")
