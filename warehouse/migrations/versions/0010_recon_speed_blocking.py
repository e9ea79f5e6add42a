"""Reconciliation at scale and per-day blocking: stored completeness differences (what Great Expectations
validates), break severity, the entity's reconciliation policy (blocking threshold, transfer matching window
and fee tolerance), how a transfer was matched, and an index for transfer legs by asset and time.

``completeness_differences`` gets the locked-day guard of 0002 (a locked day never changes).

Revision ID: 0010
Revises: 0005
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "completeness_differences",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.BigInteger(), nullable=False),
        sa.Column("previous_reported", sa.Numeric(), nullable=False),
        sa.Column("previous_reported_at", TS, nullable=True),
        sa.Column("legs_sum", sa.Numeric(), nullable=False),
        sa.Column("reported", sa.Numeric(), nullable=False),
        sa.Column("reported_at", TS, nullable=False),
        sa.Column("difference", sa.Numeric(), nullable=False, comment="reported - (previous_reported + legs_sum), never 0"),
        sa.Column("tolerance", sa.Numeric(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_completeness_differences_entity_id_entities")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_completeness_differences_account_id_accounts")),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_completeness_differences_asset_id_assets")),
        sa.PrimaryKeyConstraint("entity_id", "date", "account_id", "asset_id", name=op.f("pk_completeness_differences")),
        comment="every non-zero difference of the completeness rule (within tolerance or not); GX validates these",
    )
    op.add_column("breaks", sa.Column("severity", sa.Text(), server_default="warn", nullable=False,
                                      comment="error (blocks PnL and the close from this day on) | warn"))
    op.create_table(
        "recon_policies",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("block_above_usd", sa.Numeric(), nullable=True,
                  comment="an open break worth more than this (|difference| x close price) is at ERROR severity; "
                          "NULL: breaks only warn"),
        sa.Column("transfer_window_seconds", sa.Integer(), server_default="7200", nullable=False,
                  comment="fallback transfer matching: the incoming leg within this many seconds of the outgoing one"),
        sa.Column("transfer_fee_tolerance", sa.Numeric(), server_default="0.01", nullable=False,
                  comment="fallback transfer matching: incoming >= outgoing x (1 - this)"),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_recon_policies_entity_id_entities")),
        sa.PrimaryKeyConstraint("entity_id", name=op.f("pk_recon_policies")),
    )
    op.add_column("transfers", sa.Column("matched_by", sa.Text(), nullable=True,
                                         comment="tx_hash | amount_time (same asset, amount less the fee, time window)"))
    op.create_index("ix_transactions_entity_kind_asset_ts", "transactions", ["entity_id", "kind", "asset_id", "ts"],
                    postgresql_where=sa.text("kind IN ('transfer_in', 'transfer_out')"))
    op.execute("""
CREATE FUNCTION coinfrs_guard_completeness_differences_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE hit record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT r.entity_id, r.date AS day INTO hit FROM new_rows r
        JOIN closes c ON c.entity_id = r.entity_id AND c.date = r.date AND c.locked LIMIT 1;
    ELSE
        SELECT r.entity_id, r.date AS day INTO hit FROM old_rows r
        JOIN closes c ON c.entity_id = r.entity_id AND c.date = r.date AND c.locked LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'close day % of entity % is locked: completeness_differences rows of a locked day never change',
            hit.day, hit.entity_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
""")
    op.execute("""CREATE TRIGGER coinfrs_locked_completeness_differences_insert AFTER INSERT ON completeness_differences
                  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
                  EXECUTE FUNCTION coinfrs_guard_completeness_differences_rows()""")
    op.execute("""CREATE TRIGGER coinfrs_locked_completeness_differences_delete AFTER DELETE ON completeness_differences
                  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
                  EXECUTE FUNCTION coinfrs_guard_completeness_differences_rows()""")


def downgrade() -> None:
    op.drop_table("completeness_differences")
    op.execute("DROP FUNCTION IF EXISTS coinfrs_guard_completeness_differences_rows()")
    op.drop_index("ix_transactions_entity_kind_asset_ts", table_name="transactions")
    op.drop_table("recon_policies")
    op.drop_column("breaks", "severity")
    op.drop_column("transfers", "matched_by")
