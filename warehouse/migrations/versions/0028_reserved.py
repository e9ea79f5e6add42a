"""Reserved slot: exchanges and exports (issue 16). Empty until that work fills it.

Revision ID: 0028
Revises: 0027
"""

from typing import Sequence, Union

revision: str = "0028"
down_revision: Union[str, Sequence[str], None] = "0027"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
