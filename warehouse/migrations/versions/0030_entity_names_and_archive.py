"""Entity management (issue 17, item 7): entity names unique case-insensitively, and entities can be archived.

``entities.archived_at`` (NULL: active) marks an entity that is no longer closed: the daily schedule skips it, and
closes and imports into it are refused; everything already stored stays readable. A unique index on ``lower(name)``
makes ``Acme`` and ``acme`` one name, as every lookup now matches names case-insensitively.

Existing names that differ only in case cannot be merged without deciding whose data is whose, so the upgrade
refuses (nothing is changed) and names each group with its ids: rename all but one (or merge them by hand), then
upgrade again.

(Written for the reserved slot 0025, then moved after 0029: a database already past 0029 had recorded 0025 as
applied and would never have run it.)

Revision ID: 0030
Revises: 0029
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: Union[str, Sequence[str], None] = "0029"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _refuse_case_duplicates() -> None:
    from warehouse.migrate import MigrationRefused

    groups = op.get_bind().execute(sa.text(
        "SELECT string_agg(format('%s (id %s)', quote_literal(name), id), ', ' ORDER BY id) "
        "FROM entities GROUP BY lower(name) HAVING count(*) > 1 ORDER BY min(id)")).scalars().all()
    if groups:
        raise MigrationRefused(
            "migration 0025 makes entity names unique regardless of case, but these names differ only in case: "
            + "; ".join(groups) + ". Rename all but one of each group (UPDATE entities SET name = '<new name>' WHERE "
            "id = <id>), then run the upgrade again; nothing was changed")


def upgrade() -> None:
    _refuse_case_duplicates()
    op.add_column("entities", sa.Column(
        "archived_at", sa.DateTime(timezone=True), nullable=True,
        comment="when the entity was archived (NULL: active); an archived entity is not closed or imported into"))
    op.create_index("uq_entities_name_lower", "entities", [sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_entities_name_lower", table_name="entities")
    op.drop_column("entities", "archived_at")
