"""Price provenance: pair, disagreement flag and note on prices; one service price per source and instant.

Revision ID: 0004
Revises: 0006 (chained after the current main head; the lead re-chains at merge time)
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("prices", sa.Column("pair", sa.Text(), nullable=True,
                                      comment="what the source quoted: bitcoin/usd, BTC/USDT, EUR/USD (via bitcoin)"))
    op.add_column("prices", sa.Column("flagged", sa.Boolean(), server_default=sa.false(), nullable=False,
                                      comment="sources disagree on this asset and day by more than the threshold"))
    op.add_column("prices", sa.Column("disagreement", sa.Numeric(), nullable=True,
                                      comment="(max - min) / min over the sources of the asset and day"))
    op.add_column("prices", sa.Column("note", sa.Text(), nullable=True,
                                      comment="a manual price's source_note, or how a rate was derived"))
    op.create_index("uq_prices_service_point", "prices", ["entity_id", "asset_id", "source", "ts"], unique=True,
                    postgresql_where=sa.text("leg_id IS NULL"))


def downgrade() -> None:
    op.drop_index("uq_prices_service_point", table_name="prices")
    for column in ("note", "disagreement", "flagged", "pair"):
        op.drop_column("prices", column)
