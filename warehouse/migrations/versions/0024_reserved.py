"""Reserved slot: quarantined records and source health (issue 15). Empty until that work fills it.

Revision ID: 0024
Revises: 0023
"""

from typing import Sequence, Union

revision: str = "0024"
down_revision: Union[str, Sequence[str], None] = "0023"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
