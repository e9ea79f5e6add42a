"""General-ledger accounts mappable per entity, role, asset and account type.

Revision ID: 0019
Revises: 0018
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: Union[str, Sequence[str], None] = "0018"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("journal_accounts", sa.Column("asset", sa.Text(), nullable=False, server_default="",
                                                comment="asset symbol the mapping applies to; '' for every asset"))
    op.add_column("journal_accounts", sa.Column("account_type", sa.Text(), nullable=False, server_default="",
                                                comment="ledger account type (spot, wallet, ...); '' for every type"))
    op.drop_constraint("pk_journal_accounts", "journal_accounts", type_="primary")
    op.create_primary_key("pk_journal_accounts", "journal_accounts", ["entity_id", "role", "asset", "account_type"])


def downgrade() -> None:
    op.execute("DELETE FROM journal_accounts WHERE asset <> '' OR account_type <> ''")
    op.drop_constraint("pk_journal_accounts", "journal_accounts", type_="primary")
    op.create_primary_key("pk_journal_accounts", "journal_accounts", ["entity_id", "role"])
    op.drop_column("journal_accounts", "account_type")
    op.drop_column("journal_accounts", "asset")
