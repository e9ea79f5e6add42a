"""Ingestion cursors: one per (entity, source, account, stream) for incremental sources.

Revision ID: 0009
Revises: 0002
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "ingestion_cursors",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("cursor", postgresql.JSONB(astext_type=sa.Text()), nullable=False,
                  comment="the source's own position: an id, a time, a block, a signature"),
        sa.Column("run_id", sa.UUID(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_ingestion_cursors_entity_id_entities")),
        sa.ForeignKeyConstraint(["run_id"], ["ingestion_runs.id"], name=op.f("fk_ingestion_cursors_run_id_ingestion_runs")),
        sa.PrimaryKeyConstraint("entity_id", "source", "account", "stream", name=op.f("pk_ingestion_cursors")),
    )


def downgrade() -> None:
    op.drop_table("ingestion_cursors")
