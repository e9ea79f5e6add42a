"""Read API: API keys with scopes bound to one or more entities, reporting currency, journal mapping, indexes.

The single ``api_keys.entity_id`` binding moves to ``api_key_entities`` (existing keys keep their entity).

Revision ID: 0008
Revises: 0009
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: Union[str, Sequence[str], None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("entities", sa.Column("reporting_currency", sa.Text(), server_default="USD", nullable=False,
                                        comment="currency the API values positions in (USD, or a fiat asset with USD prices)"))
    op.add_column("api_keys", sa.Column("scope", sa.Text(), server_default="read", nullable=False, comment="read | admin"))
    op.create_check_constraint("ck_api_keys_scope", "api_keys", "scope IN ('read', 'admin')")
    op.create_table(
        "api_key_entities",
        sa.Column("api_key_id", sa.BigInteger(), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name="fk_api_key_entities_api_key_id_api_keys",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name="fk_api_key_entities_entity_id_entities",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("api_key_id", "entity_id", name="pk_api_key_entities"),
        comment="the entities an API key may read (one or more)",
    )
    op.execute("INSERT INTO api_key_entities (api_key_id, entity_id) SELECT id, entity_id FROM api_keys")
    op.drop_constraint("fk_api_keys_entity_id_entities", "api_keys", type_="foreignkey")
    op.drop_column("api_keys", "entity_id")
    op.create_table(
        "journal_accounts",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False, comment="inventory | clearing | realized_gain | fee_expense | income"),
        sa.Column("code", sa.Text(), nullable=False, comment="the general-ledger account number"),
        sa.Column("name", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name="fk_journal_accounts_entity_id_entities",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("entity_id", "role", name="pk_journal_accounts"),
        comment="per-entity general-ledger accounts of the journal entries (defaults in warehouse/journal.py)",
    )
    op.create_index("ix_transactions_entity_ts_id", "transactions", ["entity_id", "ts", "id"])
    op.create_index("ix_transfers_out_leg", "transfers", ["out_leg_id"])
    op.create_index("ix_transfers_in_leg", "transfers", ["in_leg_id"])
    op.create_index("ix_raw_records_entity_account_ingested", "raw_records", ["entity_id", "account", "ingested_at"])


def downgrade() -> None:
    op.drop_index("ix_raw_records_entity_account_ingested", table_name="raw_records")
    op.drop_index("ix_transfers_in_leg", table_name="transfers")
    op.drop_index("ix_transfers_out_leg", table_name="transfers")
    op.drop_index("ix_transactions_entity_ts_id", table_name="transactions")
    op.drop_table("journal_accounts")
    op.add_column("api_keys", sa.Column("entity_id", sa.BigInteger(), nullable=True))
    op.execute("UPDATE api_keys k SET entity_id = (SELECT min(e.entity_id) FROM api_key_entities e "
               "WHERE e.api_key_id = k.id)")
    op.execute("DELETE FROM api_keys WHERE entity_id IS NULL")
    op.alter_column("api_keys", "entity_id", nullable=False)
    op.create_foreign_key("fk_api_keys_entity_id_entities", "api_keys", "entities", ["entity_id"], ["id"])
    op.drop_table("api_key_entities")
    op.drop_constraint("ck_api_keys_scope", "api_keys", type_="check")
    op.drop_column("api_keys", "scope")
    op.drop_column("entities", "reporting_currency")
