"""Reserved slot in the migration chain (filled by the work that needs it; empty until then).

Revision ID: 0021
Revises: 0020
"""

from typing import Sequence, Union

revision: str = "0021"
down_revision: Union[str, Sequence[str], None] = "0020"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
