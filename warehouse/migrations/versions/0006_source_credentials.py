"""Exchange and custodian sources: encrypted credentials and the last sync's outcome per (entity, source).

Revision ID: 0006
Revises: 0007
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "source_credentials",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False, comment="the source's name in its entity; also its account name"),
        sa.Column("kind", sa.Text(), nullable=False, comment="connector: binance"),
        sa.Column("config", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False, comment="non-secret settings: api_url, since"),
        sa.Column("key_id", sa.Text(), nullable=False, comment="the master key that encrypted the credentials"),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False,
                  comment="AES-256-GCM of the credentials JSON; associated data binds entity id, kind and name"),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sync_status", sa.Text(), nullable=True, comment="succeeded | unavailable | refused | failed"),
        sa.Column("last_sync_message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_source_credentials_entity_id_entities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_credentials")),
        sa.UniqueConstraint("entity_id", "name", name="uq_source_credentials_entity_name"),
    )


def downgrade() -> None:
    op.drop_table("source_credentials")
