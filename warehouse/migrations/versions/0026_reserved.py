"""Reserved slot: database guards and roles (issue 18). Empty until that work fills it.

Revision ID: 0026
Revises: 0025
"""

from typing import Sequence, Union

revision: str = "0026"
down_revision: Union[str, Sequence[str], None] = "0025"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
