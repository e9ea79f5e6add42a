"""Reconciliation and the close: break causes, break actions (acknowledge / adjust), source outages,
per-source tolerances, expected streams, expectation results and close provenance.

Per-day tables of this revision get the locked-day guard of 0002 (a locked day never changes).

Revision ID: 0005
Revises: 0003
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)
GUARDED = {"expectation_results": "date", "close_provenance": "date"}


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
    op.alter_column("closes", "status", existing_type=sa.Text(), existing_nullable=False,
                    comment="closed | breaks | partial | failed", existing_comment="closed | breaks | failed")
    op.add_column("breaks", sa.Column("causes", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False,
                                      comment="ranked candidate causes: [{code, evidence, score, data}] (reconciliation/causes.py)"))
    op.create_table(
        "break_actions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False, comment="acknowledge | adjust"),
        sa.Column("actor", sa.Text(), nullable=False, comment="who"),
        sa.Column("reason", sa.Text(), nullable=False, comment="why"),
        sa.Column("quantity", sa.Numeric(), nullable=True, comment="the adjustment leg's signed quantity (adjust)"),
        sa.Column("difference", sa.Numeric(), nullable=False, comment="the break's difference when the action was taken"),
        sa.Column("raw_record_id", sa.BigInteger(), nullable=True,
                  comment="the staged manual record of the adjustment leg (adjust)"),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False, comment="when"),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_break_actions_entity_id_entities")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_break_actions_account_id_accounts")),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_break_actions_asset_id_assets")),
        sa.ForeignKeyConstraint(["raw_record_id"], ["raw_records.id"], name=op.f("fk_break_actions_raw_record_id_raw_records")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_actions")),
    )
    op.create_index("ix_break_actions_key", "break_actions", ["entity_id", "date", "account_id", "asset_id"])
    op.create_table(
        "source_outages",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False, comment="'*' when the whole source was down"),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recorded_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_source_outages_entity_id_entities")),
        sa.PrimaryKeyConstraint("entity_id", "source", "stream", "date", name=op.f("pk_source_outages")),
    )
    op.create_table(
        "source_tolerances",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("tolerance", sa.Numeric(), nullable=False, comment="absolute, in asset units; exchanges only (default 1e-8)"),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_source_tolerances")),
    )
    op.create_table(
        "expected_streams",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("since", sa.Date(), nullable=False, comment="first day the stream must have run"),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_expected_streams_entity_id_entities")),
        sa.PrimaryKeyConstraint("entity_id", "source", "stream", name=op.f("pk_expected_streams")),
    )
    op.create_table(
        "expectation_results",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("suite", sa.Text(), nullable=False),
        sa.Column("expectation", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False, comment="error | warn"),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("observed_value", postgresql.JSONB(), nullable=True),
        sa.Column("failing_rows", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("checked_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_expectation_results_entity_id_entities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expectation_results")),
        sa.UniqueConstraint("entity_id", "date", "suite", "expectation", name="uq_expectation_results_day"),
    )
    op.create_table(
        "close_provenance",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("code_version", sa.Text(), nullable=False),
        sa.Column("input_counts", postgresql.JSONB(), nullable=False),
        sa.Column("source_cursors", postgresql.JSONB(), nullable=False),
        sa.Column("outputs", postgresql.JSONB(), nullable=False, comment="the close's figures that the hash covers"),
        sa.Column("output_hash", sa.Text(), nullable=False, comment="sha256 of the canonical JSON of outputs"),
        sa.Column("report_html", sa.Text(), nullable=False, comment="the close report as it was when closed"),
        sa.Column("computed_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_close_provenance_entity_id_entities")),
        sa.PrimaryKeyConstraint("entity_id", "date", name=op.f("pk_close_provenance")),
    )
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
    for table in ("close_provenance", "expectation_results", "expected_streams", "source_tolerances", "source_outages"):
        op.drop_table(table)
    op.drop_index("ix_break_actions_key", table_name="break_actions")
    op.drop_table("break_actions")
    op.drop_column("breaks", "causes")
    op.alter_column("closes", "status", existing_type=sa.Text(), existing_nullable=False,
                    comment="closed | breaks | failed", existing_comment="closed | breaks | partial | failed")
