"""One writer per entity: a disposal is unique per book and disposing leg, so a second writer of the same close
fails instead of doubling realized PnL (issue 13). Duplicates an earlier concurrent close left are removed first
(the copy with the lowest id is kept; its matched lots stay with it).

Revision ID: 0016
Revises: 0015
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0016"
down_revision: Union[str, Sequence[str], None] = "0015"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # a locked day's rows are guarded against deletes (0002): duplicates on a locked day make this fail loudly
    op.execute("""
        DELETE FROM pnl_disposals d USING pnl_disposals k
        WHERE d.entity_id = k.entity_id AND d.method = k.method AND d.pool = k.pool AND d.leg_id = k.leg_id
          AND d.id > k.id
    """)
    op.create_unique_constraint("uq_pnl_disposals_book_leg", "pnl_disposals", ["entity_id", "method", "pool", "leg_id"])


def downgrade() -> None:
    op.drop_constraint("uq_pnl_disposals_book_leg", "pnl_disposals", type_="unique")
