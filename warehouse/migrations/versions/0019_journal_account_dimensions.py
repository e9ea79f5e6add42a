"""General ledger: accounts mappable per entity, role, asset and account type; the entity's fair-value policy.

Revision ID: 0019
Revises: 0018
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: Union[str, Sequence[str], None] = "0018"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("journal_accounts", sa.Column("asset", sa.Text(), nullable=False, server_default="",
                                                comment="asset symbol the mapping applies to; '' for every asset"))
    op.add_column("journal_accounts", sa.Column("account_type", sa.Text(), nullable=False, server_default="",
                                                comment="ledger account type (spot, wallet, ...); '' for every type"))
    op.drop_constraint("pk_journal_accounts", "journal_accounts", type_="primary")
    op.create_primary_key("pk_journal_accounts", "journal_accounts", ["entity_id", "role", "asset", "account_type"])
    op.create_table(
        "journal_settings",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("fair_value_policy", sa.Text(), nullable=False, server_default="none",
                  comment="none | asu_2023_08 (remeasure to fair value) | ifrs_cost_impairment (cost less impairment)"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name="fk_journal_settings_entity_id_entities",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("entity_id", name="pk_journal_settings"),
        sa.CheckConstraint("fair_value_policy IN ('none', 'asu_2023_08', 'ifrs_cost_impairment')",
                           name="ck_journal_settings_policy"),
        comment="per-entity general-ledger settings (warehouse/journal.py)",
    )


def downgrade() -> None:
    op.drop_table("journal_settings")
    op.execute("DELETE FROM journal_accounts WHERE asset <> '' OR account_type <> ''")
    op.drop_constraint("pk_journal_accounts", "journal_accounts", type_="primary")
    op.create_primary_key("pk_journal_accounts", "journal_accounts", ["entity_id", "role"])
    op.drop_column("journal_accounts", "account_type")
    op.drop_column("journal_accounts", "asset")
