"""Reserved slot: transfer matching and price-source order (issue 12). Empty until that work fills it.

Revision ID: 0023
Revises: 0022
"""

from typing import Sequence, Union

revision: str = "0023"
down_revision: Union[str, Sequence[str], None] = "0022"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
