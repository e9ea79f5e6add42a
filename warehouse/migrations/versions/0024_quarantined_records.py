"""Quarantined records (issue 15, errors as values): a staged record that its mapper cannot read is kept aside with
the error and the field it names; the close of its day is ``partial`` and names it, the rest of the entity closes. A
mapper fix or a new version of the record clears it (the canonical build rewrites the quarantine of the days it
rebuilds).

Revision ID: 0024
Revises: 0023
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: Union[str, Sequence[str], None] = "0023"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "quarantined_records",
        sa.Column("entity_id", sa.BigInteger(), sa.ForeignKey("entities.id"), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("source_raw_id", sa.Text(), nullable=False),
        sa.Column("raw_record_id", sa.BigInteger(), sa.ForeignKey("raw_records.id"), nullable=False,
                  comment="the staged version the mapper could not read"),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("close_date", sa.Date(), nullable=False, comment="the day the record would be booked on"),
        sa.Column("field", sa.Text(), nullable=True, comment="the field the error names, when it names one"),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("entity_id", "source", "stream", "source_raw_id", name=op.f("pk_quarantined_records")),
        comment="staged records a mapper could not read: their day's close is partial until a fix or a new version",
    )
    op.create_index("ix_quarantined_records_entity_id_close_date", "quarantined_records", ["entity_id", "close_date"])


def downgrade() -> None:
    op.drop_index("ix_quarantined_records_entity_id_close_date", table_name="quarantined_records")
    op.drop_table("quarantined_records")
