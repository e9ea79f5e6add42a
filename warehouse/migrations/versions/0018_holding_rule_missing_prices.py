"""Holding period by calendar date and no silent zero (issue 12, items 7 and 8): the entity's holding-period rule;
the missing-price items of each book and close day (every acquisition, disposal, fee or open position that needs
a fair value and has none), guarded like the other per-day tables; the close status ``unpriced``.

Revision ID: 0018
Revises: 0017
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: Union[str, Sequence[str], None] = "0017"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

Exact = sa.Numeric(asdecimal=True)
TS = sa.DateTime(timezone=True)
TABLE = "pnl_missing_prices"
STATUS_COMMENT = "closed | breaks | unpriced | blocked | partial | failed"
OLD_STATUS_COMMENT = "closed | breaks | partial | failed"


def _guard(rows: str) -> str:  # as in 0003: rows of a locked close day never change
    return f"""
CREATE FUNCTION coinfrs_guard_{TABLE}_{rows}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE hit record;
BEGIN
    SELECT r.entity_id, r.date AS day INTO hit
    FROM {rows}_rows r JOIN closes c ON c.entity_id = r.entity_id AND c.date = r.date AND c.locked
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'close day % of entity % is locked: {TABLE} rows of a locked day never change', hit.day, hit.entity_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.add_column("entities", sa.Column(
        "holding_rule", sa.Text(), server_default="us", nullable=False,
        comment="holding period: us (long-term when disposed after the anniversary of the acquisition day, in the "
                "entity's timezone) | elapsed (more than 365 x 24 hours)"))
    op.create_check_constraint("ck_entities_holding_rule", "entities", "holding_rule IN ('us', 'elapsed')")
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("entity_id", sa.BigInteger, sa.ForeignKey("entities.id", name="fk_pnl_missing_prices_entity_id_entities"),
                  nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("pool", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("what", sa.Text, nullable=False, comment="acquisition | disposal | fee | position"),
        sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id", name="fk_pnl_missing_prices_asset_id_assets"),
                  nullable=False),
        sa.Column("account_id", sa.BigInteger, nullable=False,
                  comment="the leg's account; a position: the pool's account (0: universal pool)"),
        sa.Column("pool_account_id", sa.BigInteger, nullable=False),
        sa.Column("leg_id", sa.BigInteger, comment="the leg (transactions.id); null for a position"),
        sa.Column("at", TS, nullable=False, comment="the instant the price is needed at (a position: the day's cutoff)"),
        sa.Column("quantity", Exact, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.CheckConstraint("what IN ('acquisition', 'disposal', 'fee', 'position')", name="ck_pnl_missing_prices_what"),
        sa.PrimaryKeyConstraint("id", name="pk_pnl_missing_prices"),
    )
    op.execute(f"""CREATE UNIQUE INDEX uq_pnl_missing_prices_item ON {TABLE}
                   (entity_id, method, pool, date, what, asset_id, pool_account_id, coalesce(leg_id, 0))""")
    op.execute(_guard("new"))
    op.execute(_guard("old"))
    op.execute(f"""CREATE TRIGGER coinfrs_locked_{TABLE}_insert AFTER INSERT ON {TABLE}
                   REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{TABLE}_new()""")
    op.execute(f"""CREATE TRIGGER coinfrs_locked_{TABLE}_update AFTER UPDATE ON {TABLE}
                   REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{TABLE}_old()""")
    op.execute(f"""CREATE TRIGGER coinfrs_locked_{TABLE}_delete AFTER DELETE ON {TABLE}
                   REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION coinfrs_guard_{TABLE}_old()""")
    op.alter_column("closes", "status", existing_type=sa.Text(), comment=STATUS_COMMENT)
    op.add_column("closes", sa.Column("missing_prices", sa.Integer,
                                      comment="missing-price items of the configured book that day (status unpriced)"))


def downgrade() -> None:
    op.drop_column("closes", "missing_prices")
    op.execute("UPDATE closes SET status = 'closed' WHERE status = 'unpriced'")
    op.alter_column("closes", "status", existing_type=sa.Text(), comment=OLD_STATUS_COMMENT)
    for action in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS coinfrs_locked_{TABLE}_{action} ON {TABLE}")
    op.drop_table(TABLE)
    op.execute(f"DROP FUNCTION IF EXISTS coinfrs_guard_{TABLE}_new()")
    op.execute(f"DROP FUNCTION IF EXISTS coinfrs_guard_{TABLE}_old()")
    op.drop_constraint("ck_entities_holding_rule", "entities", type_="check")
    op.drop_column("entities", "holding_rule")
