"""Realized gains of a close may be null: "not booked" on the days a blocking break stops PnL (and on failed
closes), instead of a 0 an accountant would read as "nothing realized".

Revision ID: 0015
Revises: 0014
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0015"
down_revision: Union[str, Sequence[str], None] = "0014"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = ("realized_gain_universal", "realized_gain_account")


def upgrade() -> None:
    for column in COLUMNS:
        op.alter_column("closes", column, nullable=True)


def downgrade() -> None:
    for column in COLUMNS:
        op.execute(f"UPDATE closes SET {column} = 0 WHERE {column} IS NULL")
        op.alter_column("closes", column, nullable=False)
