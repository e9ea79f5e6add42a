"""Reserved slot in the migration chain (filled by the work that needs it; empty until then).

Revision ID: 0020
Revises: 0019
"""

from typing import Sequence, Union

revision: str = "0020"
down_revision: Union[str, Sequence[str], None] = "0019"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
