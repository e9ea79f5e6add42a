"""Reserved slot, left empty: entity management went to 0030 (a database past 0029 had recorded this slot as applied).

Revision ID: 0025
Revises: 0024
"""

from typing import Sequence, Union

revision: str = "0025"
down_revision: Union[str, Sequence[str], None] = "0024"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
