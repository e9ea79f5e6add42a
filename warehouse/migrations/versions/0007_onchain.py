"""On-chain wallets: chain_wallets, chain_blocks (reorg detection), chain_sync_failures.

Revision ID: 0007
Revises: 0008
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: Union[str, Sequence[str], None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "chain_wallets",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.Text(), nullable=False,
                  comment="a chain preset name (ethereum, base, solana, ...) or a custom name"),
        sa.Column("chain_id", sa.BigInteger(), nullable=True, comment="EVM chain id; NULL for Solana"),
        sa.Column("address", sa.Text(), nullable=False, comment="EVM: lowercase 0x address; Solana: base58"),
        sa.Column("rpc_urls", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False,
                  comment="RPC URLs in failover order; empty = the chain's configured URLs (COINFRS_RPC_<CHAIN>)"),
        sa.Column("start_block", sa.BigInteger(), server_default="0", nullable=False, comment="EVM: first block scanned"),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_chain_wallets_entity_id_entities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_wallets")),
        sa.UniqueConstraint("entity_id", "chain", "address", name="uq_chain_wallets_identity"),
    )
    op.create_table(
        "chain_blocks",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("parent_hash", sa.Text(), nullable=False),
        sa.Column("timestamp", TS, nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_chain_blocks_entity_id_entities")),
        sa.PrimaryKeyConstraint("entity_id", "chain_id", "number", name=op.f("pk_chain_blocks")),
        comment="EVM blocks seen by the ingestion (hash per number): reorg detection and block-by-timestamp lookups",
    )
    op.create_index("ix_chain_blocks_entity_id_timestamp", "chain_blocks", ["entity_id", "chain_id", "timestamp"])
    op.create_table(
        "chain_sync_failures",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.Text(), nullable=False),
        sa.Column("failed_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("synced_through", TS, nullable=True,
                  comment="data of this chain is complete up to here (the last final block's time)"),
        sa.Column("error", sa.Text(), nullable=False, comment="what failed; RPC URLs reduced to their host"),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_chain_sync_failures_entity_id_entities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_sync_failures")),
        comment="a chain that could not be synced: closes of days after synced_through are partial for this chain",
    )


def downgrade() -> None:
    op.drop_table("chain_sync_failures")
    op.drop_index("ix_chain_blocks_entity_id_timestamp", table_name="chain_blocks")
    op.drop_table("chain_blocks")
    op.drop_table("chain_wallets")
