"""Chain reorgs: one row per reorg a wallet sync found, with the close days it touched and when they were re-closed.

Revision ID: 0014
Revises: 0010
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: Union[str, Sequence[str], None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "chain_reorgs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.Text(), nullable=False),
        sa.Column("fork_block", sa.BigInteger(), nullable=False, comment="the lowest block whose hash changed"),
        sa.Column("orphaned", sa.Integer(), nullable=False, comment="raw records marked orphaned"),
        sa.Column("first_day", sa.Date(), nullable=False, comment="the first close day the reorg touched"),
        sa.Column("last_day", sa.Date(), nullable=False, comment="the last close day the re-ingested branch touched"),
        sa.Column("detected_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("reclosed_at", TS, nullable=True, comment="when the touched days were re-closed (or a run requested)"),
        sa.Column("reclose_run", sa.Text(), nullable=True, comment="the Dagster run (or run key) that re-closed them"),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name=op.f("fk_chain_reorgs_entity_id_entities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_reorgs")),
        comment="reorgs found by the wallet sync; the days they touched are re-closed automatically",
    )
    op.create_index("ix_chain_reorgs_pending", "chain_reorgs", ["entity_id"], postgresql_where=sa.text("reclosed_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_chain_reorgs_pending", table_name="chain_reorgs")
    op.drop_table("chain_reorgs")
