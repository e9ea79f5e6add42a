"""Load legs for the cost-basis engine and write its books (disposals, matched lots, daily pools).

Cost basis is path-dependent: every run recomputes each book forward from the entity's first
leg and rewrites only the unlocked days of the requested range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from transforms.cost_basis import POOLS, BookResult, PnlLeg, compute_book
from warehouse.calendar import locked_dates
from warehouse.entities import Entity
from warehouse.numbers import ZERO
from warehouse.bulk import copy_rows
from warehouse.schema import pnl_disposals

_LEGS_SQL = """
SELECT l.id, l.ts, l.close_date, l.account_id, l.asset_id, a.is_fiat, l.quantity, l.kind, l.group_id, l.leg_index,
       l.unit_price_usd, l.usd_value, x.status AS transfer_status,
       CASE WHEN x.status = 'matched' AND x.out_leg_id = l.id THEN i.account_id END AS transfer_peer_account_id
FROM transactions l
JOIN assets a ON a.id = l.asset_id
LEFT JOIN transfers x ON x.entity_id = l.entity_id AND (x.out_leg_id = l.id OR x.in_leg_id = l.id)
LEFT JOIN transactions i ON i.id = x.in_leg_id
WHERE l.entity_id = :e AND l.close_date <= :t
"""


def load_pnl_legs(conn: Connection, entity_id: int, up_to: date) -> list[PnlLeg]:
    rows = conn.execute(sa.text(_LEGS_SQL), dict(e=entity_id, t=up_to)).mappings()
    return [PnlLeg(**row) for row in rows]


@dataclass(frozen=True)
class PnlStats:
    books: dict[str, BookResult]
    disposals_written: int

    def realized_per_day(self, pool: str) -> dict[date, object]:
        totals: dict[date, object] = {}
        for d in self.books[pool].disposals:
            totals[d.date] = totals.get(d.date, ZERO) + d.realized_gain
        return totals


def write_book(conn: Connection, entity: Entity, book: BookResult, start: date, end: date, locked: set[date],
               run_id: str | None) -> int:
    params = dict(e=entity.id, m=book.method, p=book.pool, s=start, t=end, locked=sorted(locked))
    conn.execute(sa.text(
        "DELETE FROM pnl_disposals WHERE entity_id = :e AND method = :m AND pool = :p AND date BETWEEN :s AND :t"
        " AND NOT (date = ANY(:locked))"), params)
    conn.execute(sa.text(
        "DELETE FROM pnl_daily WHERE entity_id = :e AND method = :m AND pool = :p AND date BETWEEN :s AND :t"
        " AND NOT (date = ANY(:locked))"), params)
    disposals = [d for d in book.disposals if start <= d.date <= end and d.date not in locked]
    if disposals:
        ids = conn.execute(
            pnl_disposals.insert().returning(pnl_disposals.c.id, sort_by_parameter_order=True),
            [dict(entity_id=entity.id, method=book.method, pool=book.pool, date=d.date, ts=d.ts, leg_id=d.leg_id,
                  account_id=d.account_id, asset_id=d.asset_id, kind=d.kind, quantity=d.quantity, proceeds=d.proceeds,
                  cost_basis=d.cost_basis, realized_gain=d.realized_gain, short_term_gain=d.short_term_gain,
                  long_term_gain=d.long_term_gain, shortfall_quantity=d.shortfall_quantity, run_id=run_id)
             for d in disposals]).scalars().all()
        lot_rows = [(disposal_id, m.lot_leg_id, m.acquired_at, m.quantity, m.cost_basis, m.term)
                    for disposal_id, d in zip(ids, disposals) for m in d.lots]
        copy_rows(conn, "pnl_disposal_lots", ("disposal_id", "lot_leg_id", "acquired_at", "quantity", "cost_basis", "term"), lot_rows)
    day_rows = [(entity.id, book.method, book.pool, p.date, p.pool_account_id, p.asset_id, p.quantity, p.cost_basis,
                 p.close_price_usd, p.market_value, p.unrealized_gain, p.realized_gain, run_id)
                for p in book.days if start <= p.date <= end and p.date not in locked]
    copy_rows(conn, "pnl_daily", ("entity_id", "method", "pool", "date", "pool_account_id", "asset_id", "quantity", "cost_basis",
                              "close_price_usd", "market_value", "unrealized_gain", "realized_gain", "run_id"), day_rows)
    return len(disposals)




def build_pnl(conn: Connection, entity: Entity, start: date, end: date, *, method: str = "fifo",
              pools: tuple[str, ...] = POOLS, run_id: str | None = None) -> PnlStats:
    """Recompute the ``method`` books of ``entity`` and store days [start, end] (locked days untouched)."""
    legs = load_pnl_legs(conn, entity.id, end)
    locked = locked_dates(conn, entity.id, start, end)
    books: dict[str, BookResult] = {}
    written = 0
    for pool in pools:
        book = compute_book(legs, method=method, pool=pool, report_from=start, report_to=end)
        books[pool] = book
        written += write_book(conn, entity, book, start, end, locked, run_id)
    return PnlStats(books, written)
