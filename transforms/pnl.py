"""Load legs, prices and book states for the cost-basis engine and write its books.

Stored books (``method``, ``pool`` columns of the pnl tables):
- the reference books ``fifo``/``universal`` and ``fifo``/``account`` (the close's
  ``realized_gain_universal`` / ``realized_gain_account``);
- the entity's configured book (``pnl_books``: a method and pool per effective date, default
  FIFO universal), stored as ``configured``/``configured`` (the close's ``realized_gain_book``).

Cost basis is path-dependent. Each close stores, per book and day, the open lots
(``pnl_open_lots``) and what else the engine needs to continue (``pnl_book_states``, with a
digest of the legs and prices up to that day and the book's schedule). A run for days
[start, end] restarts from the latest stored state before ``start`` whose digest and schedule
still match, and books only the days after it; otherwise it recomputes from the first leg.
Locked days are never rewritten (the database refuses it too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from reconciliation.staleness import mark_stale
from transforms.cost_basis import (
    BookPeriod,
    BookResult,
    BookState,
    HoldingPeriod,
    OpenLot,
    PnlLeg,
    compute_book,
    validate_book,
)
from transforms.events import STABLECOINS
from transforms.fair_value import FairValues, PriceRow, load_fair_values, usd_identity
from warehouse.bulk import copy_rows
from warehouse.calendar import cutoff_of, locked_dates
from warehouse.entities import Entity
from warehouse.numbers import ZERO, D
from warehouse.schema import pnl_books, pnl_disposals

CONFIGURED = ("configured", "configured")
REFERENCE_BOOKS: tuple[tuple[str, str], ...] = (("fifo", "universal"), ("fifo", "account"))
DEFAULT_BOOK = BookPeriod(None, "fifo", "universal")
BEGINNING = date(1970, 1, 1)
PRICE_HISTORY_FOR_RESTART = timedelta(days=7)

_LEGS_SQL = """
SELECT l.id, l.ts, l.close_date, l.account_id, l.asset_id, a.is_fiat, l.quantity, l.kind, l.group_id, l.leg_index,
       l.unit_price_usd,
       -- a USD leg is its own value (the unit of account), so a trade against USD is valued from its fiat side
       CASE WHEN l.usd_value IS NULL AND a.symbol = 'USD' THEN abs(l.quantity) ELSE l.usd_value END AS usd_value,
       x.status AS transfer_status,
       CASE WHEN x.status = 'matched' AND x.out_leg_id = l.id THEN i.account_id END AS transfer_peer_account_id,
       a.unverified, a.symbol = ANY(:stables) AS stablecoin
FROM transactions l
JOIN assets a ON a.id = l.asset_id
LEFT JOIN transfers x ON x.entity_id = l.entity_id AND (x.out_leg_id = l.id OR x.in_leg_id = l.id)
LEFT JOIN transactions i ON i.id = x.in_leg_id
WHERE l.entity_id = :e AND l.close_date <= :t AND l.close_date > :after
"""


def holding_of(entity: Entity) -> HoldingPeriod:
    """The entity's holding-period rule, on calendar dates in its timezone."""
    return HoldingPeriod(entity.holding_rule, entity.tz)


def load_pnl_legs(conn: Connection, entity_id: int, up_to: date, after: date | None = None) -> list[PnlLeg]:
    """The entity's legs booked on (after, up_to] with their transfer status, for the engine."""
    rows = conn.execute(sa.text(_LEGS_SQL), dict(e=entity_id, t=up_to, after=after or date.min,
                                                 stables=list(STABLECOINS))).mappings()
    return [PnlLeg(**row) for row in rows]


# ---------------------------------------------------------------- book configuration


def load_book_schedule(conn: Connection, entity_id: int) -> list[BookPeriod]:
    """The entity's configured book: periods by effective date (FIFO universal when none is set)."""
    rows = conn.execute(sa.select(pnl_books.c.effective_from, pnl_books.c.method, pnl_books.c.pool)
                        .where(pnl_books.c.entity_id == entity_id).order_by(pnl_books.c.effective_from)).all()
    periods = [BookPeriod(None if r.effective_from <= BEGINNING else r.effective_from, r.method, r.pool) for r in rows]
    if not periods or periods[0].effective_from is not None:
        periods.insert(0, DEFAULT_BOOK)
    return periods


def write_book_period(conn: Connection, entity_id: int, method: str, pool: str, effective_from: date | None) -> BookPeriod:
    """Set the entity's method and pool from ``effective_from`` (None: from the beginning); replaces that date's setting.

    Refused when a locked close day is on or after ``effective_from``: the change would rewrite it.
    """
    method, pool = method.strip().lower(), pool.strip().lower()
    validate_book(method, pool)
    day = effective_from or BEGINNING
    locked = conn.execute(sa.text(
        "SELECT max(date) FROM closes WHERE entity_id = :e AND locked AND date >= :d"), dict(e=entity_id, d=day)).scalar()
    if locked is not None:
        raise ValueError(f"effective date {day}: close day {locked} is locked; a book change may start only after the "
                         "last locked day")
    conn.execute(insert(pnl_books).values(entity_id=entity_id, effective_from=day, method=method, pool=pool)
                 .on_conflict_do_update(index_elements=["entity_id", "effective_from"],
                                        set_=dict(method=method, pool=pool, created_at=sa.func.now())))
    mark_stale(conn, entity_id, day, f"cost-basis book set to {method}:{pool} from {day}")
    return BookPeriod(effective_from, method, pool)


def write_holding_rule(conn: Connection, entity: Entity, rule: str) -> tuple[date, date] | None:
    """Set the entity's holding-period rule (``us`` | ``elapsed``); returns the span of its stored closes (to re-close
    so their disposals' terms follow the rule), None when it has none or the rule is unchanged.

    Refused while a close day of the entity is locked: its stored terms would no longer follow the entity's rule."""
    from transforms.cost_basis import validate_holding_rule
    from warehouse.schema import entities

    rule = validate_holding_rule((rule or "").strip().lower())
    if rule == entity.holding_rule:
        return None
    locked = conn.execute(sa.text("SELECT max(date) FROM closes WHERE entity_id = :e AND locked"),
                          dict(e=entity.id)).scalar()
    if locked is not None:
        raise ValueError(f"{entity.name}: close day {locked} is locked; the holding rule applies to every disposal, so "
                         "it cannot change once a day is locked")
    conn.execute(sa.update(entities).where(entities.c.id == entity.id).values(holding_rule=rule))
    span = conn.execute(sa.text("SELECT min(date), max(date) FROM closes WHERE entity_id = :e"), dict(e=entity.id)).one()
    return (span[0], span[1]) if span[0] is not None else None


def schedule_signature(periods: list[BookPeriod], day: date) -> str:
    return ";".join(f"{p.effective_from or ''}:{p.method}:{p.pool}" for p in periods
                    if p.effective_from is None or p.effective_from <= day)


def book_schedule(conn: Connection, entity_id: int, method: str, pool: str) -> list[BookPeriod]:
    if (method, pool) == CONFIGURED:
        return load_book_schedule(conn, entity_id)
    validate_book(method, pool)
    return [BookPeriod(None, method, pool)]


# ---------------------------------------------------------------- restart states


def inputs_digests(conn: Connection, entity: Entity, up_to: date) -> dict[date, str]:
    """Per close day: a digest of every leg, transfer match and price up to that day's cutoff (cumulative).

    A state saved at the end of day D is reused only while the digest at D is unchanged: a re-imported leg,
    a transfer matched later (its row carries the out-leg's day), a new price for an earlier time, or an
    approved asset (its legs were left out while it was unverified) invalidates it."""
    params = dict(e=entity.id, t=up_to, tz=entity.timezone)
    queries = (
        "SELECT close_date AS day, count(*), sum(t.id), sum(quantity), sum(coalesce(usd_value, 0)),"
        " count(*) FILTER (WHERE a.unverified) FROM transactions t JOIN assets a ON a.id = t.asset_id"
        " WHERE entity_id = :e AND close_date <= :t GROUP BY 1",
        "SELECT close_date AS day, count(*), sum(coalesce(out_leg_id, 0)), sum(coalesce(in_leg_id, 0)),"
        " count(*) FILTER (WHERE status = 'matched') FROM transfers WHERE entity_id = :e AND close_date <= :t GROUP BY 1",
        "SELECT ((ts - interval '1 microsecond') AT TIME ZONE :tz)::date AS day, count(*), sum(asset_id), sum(price_usd),"
        " sum(length(source)) FROM prices WHERE entity_id = :e"
        " AND ((ts - interval '1 microsecond') AT TIME ZONE :tz)::date <= :t GROUP BY 1",
    )
    width = (5, 4, 4)  # values per query
    per_day: dict[date, list[list]] = {}
    for kind, query in enumerate(queries):
        for day, *values in conn.execute(sa.text(query), params).all():
            per_day.setdefault(day, [[0] * n for n in width])[kind] = list(values)
    digests: dict[date, str] = {}
    totals = [[0] * n for n in width]
    for day in sorted(per_day):
        for kind, values in enumerate(per_day[day]):
            totals[kind] = [a + b for a, b in zip(totals[kind], values)]
        digests[day] = "|".join(":".join(str(v) for v in values) for values in totals)
    return digests


def digest_at(digests: dict[date, str], day: date) -> str:
    earlier = [d for d in digests if d <= day]
    return digests[max(earlier)] if earlier else "empty"


def _key_text(key: tuple[int, int]) -> str:
    return f"{key[0]}:{key[1]}"


def _text_key(text: str) -> tuple[int, int]:
    a, b = text.split(":")
    return int(a), int(b)


def load_book_state(conn: Connection, entity: Entity, method: str, pool: str, before: date,
                    periods: list[BookPeriod], digests: dict[date, str]) -> BookState | None:
    """The latest stored state of a book before ``before`` that is still valid, else None."""
    row = conn.execute(sa.text(
        "SELECT * FROM pnl_book_states WHERE entity_id = :e AND method = :m AND pool = :p AND date < :d"
        " ORDER BY date DESC LIMIT 1"), dict(e=entity.id, m=method, p=pool, d=before)).mappings().first()
    if row is None:
        return None
    if row["inputs_digest"] != digest_at(digests, row["date"]) or row["schedule"] != schedule_signature(periods, row["date"]):
        return None
    lots = conn.execute(sa.text(
        "SELECT * FROM pnl_open_lots WHERE entity_id = :e AND method = :m AND pool = :p AND date = :d ORDER BY seq"),
        dict(e=entity.id, m=method, p=pool, d=row["date"])).mappings().all()
    return BookState(
        row["date"], row["state_method"], row["state_pool"],
        [OpenLot(l["date"], l["pool_account_id"], l["asset_id"], l["lot_leg_id"], l["acquired_at"], l["quantity"],
                 l["cost_basis"], l["flagged"], l["account_id"], l["seq"]) for l in lots],
        {_text_key(k): D(v) for k, v in row["pool_basis"].items()},
        {_text_key(k): D(v) for k, v in row["holdings"].items()}, row["next_seq"])


def load_restart_prices(conn: Connection, entity_id: int, since: datetime, up_to: datetime) -> FairValues:
    """Prices after ``since`` plus the latest one per asset and source before it (for a restart)."""
    rows = conn.execute(sa.text(
        """
        SELECT asset_id, ts, price_usd, source, resolution FROM (
            SELECT DISTINCT ON (asset_id, source) id, asset_id, ts, price_usd, source, resolution FROM prices
            WHERE entity_id = :e AND ts <= :s ORDER BY asset_id, source, ts DESC, id DESC) old
        UNION ALL
        SELECT asset_id, ts, price_usd, source, resolution FROM prices WHERE entity_id = :e AND ts > :s AND ts <= :t
        """), dict(e=entity_id, s=since, t=up_to)).all()
    return FairValues([*usd_identity(conn), *(PriceRow(r.asset_id, r.ts, r.price_usd, r.source, r.resolution)
                                              for r in rows)])


# ---------------------------------------------------------------- writing


def write_book(conn: Connection, entity: Entity, ident: tuple[str, str], book: BookResult, start: date, end: date,
               locked: set[date], run_id: str | None, periods: list[BookPeriod] | None = None,
               digests: dict[date, str] | None = None) -> int:
    """Replace the stored rows of book ``ident`` for the unlocked days of [start, end]."""
    method, pool = ident
    params = dict(e=entity.id, m=method, p=pool, s=start, t=end, locked=sorted(locked))
    for table in ("pnl_disposals", "pnl_daily", "pnl_open_lots", "pnl_book_states", "pnl_missing_prices"):
        conn.execute(sa.text(
            f"DELETE FROM {table} WHERE entity_id = :e AND method = :m AND pool = :p AND date BETWEEN :s AND :t"
            " AND NOT (date = ANY(:locked))"), params)
    keep = lambda day: start <= day <= end and day not in locked  # noqa: E731
    disposals = [d for d in book.disposals if keep(d.date)]
    if disposals:
        ids = conn.execute(
            pnl_disposals.insert().returning(pnl_disposals.c.id, sort_by_parameter_order=True),
            [dict(entity_id=entity.id, method=method, pool=pool, date=d.date, ts=d.ts, leg_id=d.leg_id,
                  account_id=d.account_id, asset_id=d.asset_id, kind=d.kind, quantity=d.quantity, proceeds=d.proceeds,
                  cost_basis=d.cost_basis, realized_gain=d.realized_gain, short_term_gain=d.short_term_gain,
                  long_term_gain=d.long_term_gain, shortfall_quantity=d.shortfall_quantity, run_id=run_id)
             for d in disposals]).scalars().all()
        lot_rows = [(disposal_id, m.lot_leg_id, m.acquired_at, m.quantity, m.cost_basis, m.term)
                    for disposal_id, d in zip(ids, disposals) for m in d.lots]
        copy_rows(conn, "pnl_disposal_lots", ("disposal_id", "lot_leg_id", "acquired_at", "quantity", "cost_basis", "term"),
                  lot_rows)
    copy_rows(conn, "pnl_daily", (
        "entity_id", "method", "pool", "date", "pool_account_id", "asset_id", "quantity", "cost_basis", "close_price_usd",
        "market_value", "unrealized_gain", "realized_gain", "run_id", "acquired_quantity", "acquired_basis",
        "disposed_quantity", "disposed_basis", "transferred_in_quantity", "transferred_in_basis",
        "transferred_out_quantity", "transferred_out_basis", "shortfall_quantity"),
        ((entity.id, method, pool, p.date, p.pool_account_id, p.asset_id, p.quantity, p.cost_basis, p.close_price_usd,
          p.market_value, p.unrealized_gain, p.realized_gain, run_id, *p.movements, p.shortfall_quantity)
         for p in book.days if keep(p.date)))
    copy_rows(conn, "pnl_open_lots", (
        "entity_id", "method", "pool", "date", "seq", "pool_account_id", "asset_id", "lot_leg_id", "account_id",
        "acquired_at", "quantity", "cost_basis", "flagged", "run_id"),
        ((entity.id, method, pool, l.date, l.seq, l.pool_account_id, l.asset_id, l.lot_leg_id, l.account_id, l.acquired_at,
          l.quantity, l.cost_basis, l.flagged, run_id) for l in book.open_lots if keep(l.date)))
    write_missing_prices(conn, entity, ident, book, keep, run_id)
    if periods is not None and digests is not None:
        copy_rows(conn, "pnl_book_states", (
            "entity_id", "method", "pool", "date", "state_method", "state_pool", "schedule", "inputs_digest",
            "pool_basis", "holdings", "next_seq", "run_id"),
            ((entity.id, method, pool, s.as_of, s.method, s.pool, schedule_signature(periods, s.as_of),
              digest_at(digests, s.as_of), json.dumps({_key_text(k): str(v) for k, v in s.pool_basis.items()}),
              json.dumps({_key_text(k): str(v) for k, v in s.holdings.items()}), s.next_seq, run_id)
             for s in book.states if keep(s.as_of)))
    return len(disposals)


def write_missing_prices(conn: Connection, entity: Entity, ident: tuple[str, str], book: BookResult,
                         keep: Callable[[date], bool], run_id: str | None) -> int:
    """Store the book's missing-price items of the kept days (the caller deleted the days' rows first)."""
    rows: dict[tuple, tuple] = {}
    for m in book.missing_prices:
        if keep(m.date):
            rows.setdefault((m.date, m.what, m.asset_id, m.pool_account_id, m.leg_id or 0), (
                entity.id, *ident, m.date, m.what, m.asset_id, m.account_id, m.pool_account_id, m.leg_id, m.at,
                m.quantity, run_id))
    copy_rows(conn, "pnl_missing_prices", ("entity_id", "method", "pool", "date", "what", "asset_id", "account_id",
                                           "pool_account_id", "leg_id", "at", "quantity", "run_id"), rows.values())
    return len(rows)


@dataclass(frozen=True)
class PnlStats:
    books: dict[tuple[str, str], BookResult]
    disposals_written: int
    restarted_from: dict[tuple[str, str], date | None]


def compute_stored_book(conn: Connection, entity: Entity, ident: tuple[str, str], start: date, end: date,
                        digests: dict[date, str], *, incremental: bool = True,
                        keep_open_lots: bool = True) -> tuple[BookResult, BookState | None, list[BookPeriod]]:
    """Compute book ``ident`` for [start, end], restarting from a valid stored state when there is one."""
    periods = book_schedule(conn, entity.id, *ident)
    state = load_book_state(conn, entity, *ident, start, periods, digests) if incremental else None
    legs = load_pnl_legs(conn, entity.id, end, after=state.as_of if state else None)
    if state is not None:
        since = cutoff_of(state.as_of, entity.tz) - PRICE_HISTORY_FOR_RESTART
        prices = load_restart_prices(conn, entity.id, since, cutoff_of(end, entity.tz))
    else:
        prices = load_fair_values(conn, entity.id, cutoff_of(end, entity.tz))
    result = compute_book(legs, schedule=periods, report_from=start, report_to=end, fair_values=prices,
                          cutoff=lambda day: cutoff_of(day, entity.tz), start_state=state,
                          keep_open_lots=keep_open_lots, keep_states=True, holding=holding_of(entity))
    return result, state, periods


def build_pnl(conn: Connection, entity: Entity, start: date, end: date, *, run_id: str | None = None,
              incremental: bool = True) -> PnlStats:
    """Book the reference FIFO books and the configured book of ``entity`` for days [start, end] (locked days untouched).

    First the days' derived prices (trade-implied and stablecoin pegs, ``transforms.prices.write_derived_prices``), so
    every book values with them."""
    from ingestion.prices.settings import get_price_settings
    from transforms.prices import write_derived_prices

    settings = get_price_settings()
    write_derived_prices(conn, entity, start, end, pegs=settings.pegs(), threshold=settings.price_disagreement_threshold)
    locked = locked_dates(conn, entity.id, start, end)
    digests = inputs_digests(conn, entity, end)
    books: dict[tuple[str, str], BookResult] = {}
    restarted: dict[tuple[str, str], date | None] = {}
    written = 0
    for ident in (*REFERENCE_BOOKS, CONFIGURED):
        result, state, periods = compute_stored_book(conn, entity, ident, start, end, digests, incremental=incremental)
        books[ident] = result
        restarted[ident] = state.as_of if state else None
        written += write_book(conn, entity, ident, result, start, end, locked, run_id, periods, digests)
    write_valuations(conn, entity, books[REFERENCE_BOOKS[0]], start, end, locked)
    return PnlStats(books, written, restarted)


def write_valuations(conn: Connection, entity: Entity, book: BookResult, start: date, end: date, locked: set[date]) -> None:
    """Store each trade's one value and how it was found (``events.valued_by``) for the unlocked days of [start, end]
    (the valuation does not depend on the method or pool: the reference book's is stored)."""
    params = dict(e=entity.id, s=start, t=end, locked=sorted(locked))
    conn.execute(sa.text(
        "UPDATE events SET valued_by = NULL, value_usd = NULL, price_asset_id = NULL, unit_price_usd = NULL"
        " WHERE entity_id = :e AND close_date BETWEEN :s AND :t AND NOT (close_date = ANY(:locked))"
        " AND valued_by IS NOT NULL"), params)
    if not book.valuations:
        return
    conn.execute(sa.text("CREATE TEMP TABLE tmp_valuations (group_id text, valued_by text, value_usd numeric,"
                         " price_asset_id bigint, unit_price_usd numeric) ON COMMIT DROP"))
    copy_rows(conn, "tmp_valuations", ("group_id", "valued_by", "value_usd", "price_asset_id", "unit_price_usd"),
              ((group, v.rule, v.value, v.asset_id, v.unit_price) for group, v in book.valuations.items()))
    conn.execute(sa.text(
        """UPDATE events e SET valued_by = v.valued_by, value_usd = v.value_usd, price_asset_id = v.price_asset_id,
                  unit_price_usd = v.unit_price_usd
           FROM tmp_valuations v
           WHERE e.entity_id = :e AND e.group_id = v.group_id AND e.close_date BETWEEN :s AND :t
             AND NOT (e.close_date = ANY(:locked))"""), params)
    conn.execute(sa.text("DROP TABLE tmp_valuations"))

