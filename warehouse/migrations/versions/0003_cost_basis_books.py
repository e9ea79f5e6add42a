"""Cost basis books: configured book per entity and date, open lots and restart states per close,
roll-forward movements on ``pnl_daily``, the configured book's figures on ``closes``.

Revision ID: 0003
Revises: 0004
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

Exact = sa.Numeric(asdecimal=True)
TS = sa.DateTime(timezone=True)
MOVEMENTS = [f"{m}_{p}" for m in ("acquired", "disposed", "transferred_in", "transferred_out") for p in ("quantity", "basis")]
GUARDED = {"pnl_open_lots": "date", "pnl_book_states": "date"}  # locked days never change (as in 0002)


def _guard(table: str, column: str, rows: str) -> str:
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
    op.create_table(
        "pnl_books",
        sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id", name="fk_pnl_books_entity_id_entities"), nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("pool", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("entity_id", "effective_from", name="pk_pnl_books"),
    )
    op.create_table(
        "pnl_open_lots",
        sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id", name="fk_pnl_open_lots_entity_id_entities"), nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("pool", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("pool_account_id", sa.BigInteger, nullable=False),
        sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id", name="fk_pnl_open_lots_asset_id_assets"), nullable=False),
        sa.Column("lot_leg_id", sa.BigInteger, nullable=False),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("quantity", Exact, nullable=False),
        sa.Column("cost_basis", Exact, nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.PrimaryKeyConstraint("entity_id", "method", "pool", "date", "seq", name="pk_pnl_open_lots"),
    )
    op.create_table(
        "pnl_book_states",
        sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id", name="fk_pnl_book_states_entity_id_entities"), nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("pool", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("state_method", sa.Text, nullable=False),
        sa.Column("state_pool", sa.Text, nullable=False),
        sa.Column("schedule", sa.Text, nullable=False),
        sa.Column("inputs_digest", sa.Text, nullable=False),
        sa.Column("pool_basis", JSONB, nullable=False),
        sa.Column("holdings", JSONB, nullable=False),
        sa.Column("next_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("run_id", sa.Text),
        sa.PrimaryKeyConstraint("entity_id", "method", "pool", "date", name="pk_pnl_book_states"),
    )
    for column in MOVEMENTS:
        op.add_column("pnl_daily", sa.Column(column, Exact))
    op.add_column("pnl_daily", sa.Column("shortfall_quantity", Exact))
    op.add_column("closes", sa.Column("book", sa.Text))
    op.add_column("closes", sa.Column("realized_gain_book", Exact))
    op.add_column("closes", sa.Column("shortfalls", sa.Integer))
    for table, column in GUARDED.items():
        op.execute(_guard(table, column, "new"))
        op.execute(_guard(table, column, "old"))
        op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_insert AFTER INSERT ON {table}
                       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_new()""")
        op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_update AFTER UPDATE ON {table}
                       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_old()""")
        op.execute(f"""CREATE TRIGGER coinfrs_locked_{table}_delete AFTER DELETE ON {table}
                       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{table}_old()""")


def downgrade() -> None:
    for table in GUARDED:
        for action in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS coinfrs_locked_{table}_{action} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS coinfrs_guard_{table}_new()")
        op.execute(f"DROP FUNCTION IF EXISTS coinfrs_guard_{table}_old()")
    for column in ("book", "realized_gain_book", "shortfalls"):
        op.drop_column("closes", column)
    for column in [*MOVEMENTS, "shortfall_quantity"]:
        op.drop_column("pnl_daily", column)
    op.drop_table("pnl_book_states")
    op.drop_table("pnl_open_lots")
    op.drop_table("pnl_books")
