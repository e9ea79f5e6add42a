"""Manual classifications (issue 12): a person classifies a leg no mapper understood (or overrides a mapper's kind),
with who, when and why; the canonical build applies it to every version of the record.

Revision ID: 0022
Revises: 0021
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: Union[str, Sequence[str], None] = "0021"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "leg_classifications",
        sa.Column("entity_id", sa.BigInteger(), sa.ForeignKey("entities.id"), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("source_raw_id", sa.Text(), nullable=False),
        sa.Column("leg_index", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False, comment="a kind of the vocabulary (transforms/events.py)"),
        sa.Column("mapped_kind", sa.Text(), nullable=False, comment="what the mapper had said"),
        sa.Column("classified_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("classified_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("entity_id", "source", "stream", "source_raw_id", "leg_index",
                                name=op.f("pk_leg_classifications")),
        sa.CheckConstraint("kind <> 'unclassified'", name=op.f("ck_leg_classifications_kind")),
        comment="a person's classification of a staged record's leg, applied by the canonical build",
    )


def downgrade() -> None:
    op.drop_table("leg_classifications")
