"""Reorgs found by the wallet sync, and which close days they oblige us to close again.

The sync records each reorg (``chain_reorgs``: fork block, orphaned records, the close days touched) once it has
orphaned the old branch and re-ingested the new one. Those days, and every later day already closed (positions and
cost basis roll forward), are then re-closed without anyone asking: by the in-process close right after its run
(``orchestration.chain_reclose``) and by the Dagster sensor ``chain_reorg_sensor`` in a deployment. A locked day is
never rebuilt: what changed for it lands as adjustments on the first open day (see ``evm_reorg_reversals``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciliation.close import days_to_reclose, latest_close_date
from warehouse.schema import chain_reorgs

NOTHING_CLOSED = "no close to redo"


@dataclass(frozen=True)
class RecloseWindow:
    entity_id: int
    reorg_ids: tuple[int, ...]
    start: date | None  # None: none of the touched days (nor any later day) was closed yet: nothing to redo
    end: date | None


def write_chain_reorg(conn: Connection, entity_id: int, chain: str, *, fork_block: int, orphaned: int,
                      days: set[date]) -> int:
    return conn.execute(chain_reorgs.insert().values(
        entity_id=entity_id, chain=chain, fork_block=fork_block, orphaned=orphaned, first_day=min(days),
        last_day=max(days)).returning(chain_reorgs.c.id)).scalar_one()


def load_reclose_windows(conn: Connection, first_allowed: date, last_allowed: date,
                         entity_ids: list[int] | None = None) -> list[RecloseWindow]:
    """Per entity with reorgs not yet re-closed: the days to close again (through its latest close)."""
    query = (sa.select(chain_reorgs.c.entity_id, sa.func.array_agg(chain_reorgs.c.id).label("ids"),
                       sa.func.min(chain_reorgs.c.first_day).label("first"), sa.func.max(chain_reorgs.c.last_day).label("last"))
             .where(chain_reorgs.c.reclosed_at.is_(None)).group_by(chain_reorgs.c.entity_id).order_by(chain_reorgs.c.entity_id))
    if entity_ids is not None:
        query = query.where(chain_reorgs.c.entity_id.in_(entity_ids))
    windows = []
    for row in conn.execute(query):
        latest = latest_close_date(conn, row.entity_id)
        window = days_to_reclose(row.first, row.last, latest, first_allowed, last_allowed) \
            if latest is not None and latest >= row.first else None
        windows.append(RecloseWindow(row.entity_id, tuple(sorted(row.ids)), *(window or (None, None))))
    return windows


def mark_reclosed(conn: Connection, reorg_ids: tuple[int, ...], run: str) -> None:
    conn.execute(chain_reorgs.update().where(chain_reorgs.c.id.in_(reorg_ids), chain_reorgs.c.reclosed_at.is_(None))
                 .values(reclosed_at=sa.func.now(), reclose_run=run))
