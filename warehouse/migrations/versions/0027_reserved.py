"""Reserved slot, left empty (a database past 0029 had recorded it as applied; its work went to 0031).

Revision ID: 0027
Revises: 0026
"""

from typing import Sequence, Union

revision: str = "0027"
down_revision: Union[str, Sequence[str], None] = "0026"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
