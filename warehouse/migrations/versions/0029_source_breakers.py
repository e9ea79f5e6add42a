"""Circuit breakers per source (issue 15, item 5): after N consecutive failed syncs a source's breaker opens and its
syncs are skipped (the days they would read are recorded as outages, so the close is partial and says so) until a
cool-down has passed; then one sync probes (half-open) and closes the breaker on success or opens it again. Kept in
the database so every process (CLI, Dagster runs, workers) sees the same state.

Revision ID: 0029
Revises: 0028
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: Union[str, Sequence[str], None] = "0028"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "source_breakers",
        sa.Column("source_id", sa.BigInteger(), sa.ForeignKey("source_credentials.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default="closed", comment="closed | open | half_open"),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True, comment="when it last opened"),
        sa.Column("probe_started_at", sa.DateTime(timezone=True), nullable=True,
                  comment="half_open: when the probing sync started"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("source_id", name=op.f("pk_source_breakers")),
        sa.CheckConstraint("state IN ('closed', 'open', 'half_open')", name=op.f("ck_source_breakers_state")),
        sa.CheckConstraint("consecutive_failures >= 0", name=op.f("ck_source_breakers_failures")),
        comment="circuit breaker per configured source: open after repeated failed syncs, half-open probe after a "
                "cool-down",
    )


def downgrade() -> None:
    op.drop_table("source_breakers")
