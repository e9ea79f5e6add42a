"""Prices in the warehouse: write with provenance, flag disagreements, choose by precedence, convert currencies.

Every price row says where it came from: ``source`` ('manual' | 'trade' | 'peg' | 'coingecko' |
'exchange:<ccxt id>' | 'ledger'), ``pair`` (what the source quoted), ``ts`` (the instant it holds at), ``resolution``
('trade', 'point', 'minute', 'hour', 'day'), ``fetched_at``, and ``flagged``/``disagreement`` when sources disagree.

Choosing a price for an asset at an instant ``at``: among the rows in the day before ``at``
(``at - 1 day < ts <= at``), the highest precedence wins (the configured order, transforms/price_order.py; default
manual > trade > peg > coingecko > exchange, then ledger), then the latest ``ts``. A fiat FX rate is the USD price of the fiat asset (EUR, GBP): 1 EUR = rate USD.

Derived prices (``write_derived_prices``, written by the cost-basis step before it books): ``trade``, the price
implied by each of the entity's own trades of an asset against USD or a pegged stablecoin (quote amount / quantity;
one row per leg, ``leg_id`` set, like the ledger's own prices), and ``peg``, 1 USD at every day's cutoff for the
stablecoins of ``COINFRS_PRICE_PEGS`` the entity holds (flagged when a market source disagrees beyond the threshold).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ingestion.prices.points import PricePoint
from reconciliation.staleness import mark_stale_from_time
from transforms.price_order import rank_sql, source_rank  # noqa: F401  (source_rank: re-exported for callers)
from warehouse.bulk import copy_rows
from warehouse.calendar import cutoff_of, locked_dates
from warehouse.entities import Entity
from warehouse.numbers import exact_context, quantize
from warehouse.schema import asset_aliases, assets

DAY_OF_SQL = "((p.ts - interval '1 microsecond') AT TIME ZONE :tz)::date"
CURRENCIES = ("USD", "EUR", "GBP")


class PriceNotFound(LookupError):
    """No price (or FX rate) for an asset around an instant."""


@dataclass(frozen=True)
class PriceRow:
    """A price to store: one asset, one instant, one source, with its provenance."""

    asset_id: int
    ts: datetime
    price_usd: Decimal
    source: str
    resolution: str
    pair: str | None
    note: str | None = None


@dataclass(frozen=True)
class ResolvedPrice:
    asset_id: int
    symbol: str
    ts: datetime
    price_usd: Decimal
    source: str
    resolution: str
    pair: str | None
    fetched_at: datetime
    flagged: bool
    disagreement: Decimal | None
    note: str | None


# ----------------------------------------------------------------------------- pure


def compute_day_closes(points: Sequence[PricePoint], days: Iterable[date], tz, *, now: datetime) -> dict[date, PricePoint]:
    """The close of each day: the last point inside the day (cutoff(D-1), cutoff(D)]; days not yet over are skipped."""
    ordered = sorted(points, key=lambda p: p.ts)
    instants = [p.ts for p in ordered]
    result: dict[date, PricePoint] = {}
    for day in days:
        start, end = cutoff_of(day - timedelta(days=1), tz), cutoff_of(day, tz)
        if end > now:
            continue
        last = bisect_right(instants, end) - 1
        if last >= 0 and instants[last] > start:
            result[day] = ordered[last]
    return result


def compute_cross_rates(usd: dict[date, PricePoint], other: dict[date, PricePoint]) -> dict[date, PricePoint]:
    """USD per unit of another currency from one coin priced in both: usd / other, same instant only."""
    rates: dict[date, PricePoint] = {}
    with exact_context():
        for day, point in usd.items():
            quoted = other.get(day)
            if quoted is not None and quoted.ts == point.ts and quoted.price > 0:
                rates[day] = PricePoint(point.ts, quantize(point.price / quoted.price))
    return rates


# ----------------------------------------------------------------------------- database


def write_price_rows(conn: Connection, entity_id: int, rows: Sequence[PriceRow]) -> int:
    """Upsert service prices (one per entity, asset, source and instant); returns the rows written."""
    if not rows:
        return 0
    conn.execute(sa.text(
        "CREATE TEMP TABLE tmp_price_rows (asset_id bigint, ts timestamptz, price_usd numeric, source text, "
        "resolution text, pair text, note text) ON COMMIT DROP"))
    copy_rows(conn, "tmp_price_rows", ("asset_id", "ts", "price_usd", "source", "resolution", "pair", "note"),
              [(r.asset_id, r.ts, r.price_usd, r.source, r.resolution, r.pair, r.note) for r in rows])
    # only a price that is new or differs makes closes stale (a refetch of the same figures does not)
    changed = conn.execute(sa.text(
        """SELECT min(t.ts) FROM tmp_price_rows t
           WHERE NOT EXISTS (SELECT 1 FROM prices p WHERE p.entity_id = :e AND p.asset_id = t.asset_id
                             AND p.source = t.source AND p.ts = t.ts AND p.leg_id IS NULL AND p.price_usd = t.price_usd)"""), dict(e=entity_id)).scalar()
    written = conn.execute(sa.text(
        """
        INSERT INTO prices (entity_id, asset_id, ts, price_usd, source, resolution, pair, note, fetched_at)
        SELECT DISTINCT ON (asset_id, source, ts) :e, asset_id, ts, price_usd, source, resolution, pair, note, now()
        FROM tmp_price_rows ORDER BY asset_id, source, ts
        ON CONFLICT (entity_id, asset_id, source, ts) WHERE leg_id IS NULL DO UPDATE
        SET price_usd = EXCLUDED.price_usd, resolution = EXCLUDED.resolution, pair = EXCLUDED.pair,
            note = EXCLUDED.note, fetched_at = EXCLUDED.fetched_at
        """), dict(e=entity_id)).rowcount
    conn.execute(sa.text("DROP TABLE tmp_price_rows"))
    mark_stale_from_time(conn, entity_id, changed, "new or changed prices")
    return written


def write_disagreement_flags(conn: Connection, entity: Entity, asset_ids: Iterable[int], start: date, end: date,
                             threshold: Decimal) -> int:
    """Flag every service price of an asset and day whose sources spread by more than ``threshold``.

    spread = (max - min) / min over the day's prices from different sources (manual, coingecko, exchanges);
    ledger trade prices are not compared. Returns the number of flagged rows.
    """
    params = dict(e=entity.id, assets=sorted(set(asset_ids)), tz=entity.timezone, threshold=threshold,
                  wf=cutoff_of(start - timedelta(days=1), entity.tz), wt=cutoff_of(end, entity.tz))
    in_window = "p.entity_id = :e AND p.leg_id IS NULL AND p.asset_id = ANY(:assets) AND p.ts > :wf AND p.ts <= :wt"
    conn.execute(sa.text(
        f"""
        UPDATE prices p SET disagreement = sp.s, flagged = coalesce(sp.s > :threshold, false)
        FROM (
            SELECT p.asset_id, {DAY_OF_SQL} AS day,
                   CASE WHEN min(p.source) <> max(p.source)
                        THEN round((max(p.price_usd) - min(p.price_usd)) / min(p.price_usd), 18) END AS s
            FROM prices p WHERE {in_window} GROUP BY 1, 2
        ) sp
        WHERE {in_window} AND p.asset_id = sp.asset_id AND {DAY_OF_SQL} = sp.day
          AND (p.disagreement IS DISTINCT FROM sp.s OR p.flagged IS DISTINCT FROM coalesce(sp.s > :threshold, false))
        """), params)
    return conn.execute(sa.text(
        "SELECT count(*) FROM prices p WHERE p.entity_id = :e AND p.asset_id = ANY(:assets) AND p.flagged "
        "AND p.ts > :wf AND p.ts <= :wt"), params).scalar_one()


def existing_service_days(conn: Connection, entity: Entity, asset_id: int, source: str, start: date, end: date) -> set[date]:
    """The days in [start, end] for which ``source`` already has a price of the asset (the cache)."""
    rows = conn.execute(sa.text(
        f"SELECT DISTINCT {DAY_OF_SQL} FROM prices p WHERE p.entity_id = :e AND p.asset_id = :a AND p.source = :s "
        "AND p.leg_id IS NULL AND p.ts > :wf AND p.ts <= :wt"),
        dict(e=entity.id, a=asset_id, s=source, tz=entity.timezone,
             wf=cutoff_of(start - timedelta(days=1), entity.tz), wt=cutoff_of(end, entity.tz))).scalars()
    return set(rows)


_RESOLVED_COLUMNS = ("p.asset_id, a.symbol, p.ts, p.price_usd, p.source, p.resolution, p.pair, p.fetched_at, "
                     "p.flagged, p.disagreement, p.note")


def _resolved(row: sa.Row) -> ResolvedPrice:
    return ResolvedPrice(row.asset_id, row.symbol, row.ts, row.price_usd, row.source, row.resolution, row.pair,
                         row.fetched_at, row.flagged, row.disagreement, row.note)


def load_price(conn: Connection, entity_id: int, asset_id: int, at: datetime, *,
               max_age: timedelta = timedelta(days=1)) -> ResolvedPrice | None:
    """The price of an asset at ``at``: best source among ``at - max_age < ts <= at``, then the latest."""
    row = conn.execute(sa.text(
        f"""
        SELECT {_RESOLVED_COLUMNS} FROM prices p JOIN assets a ON a.id = p.asset_id
        WHERE p.entity_id = :e AND p.asset_id = :a AND p.ts <= :at AND p.ts > :since
        ORDER BY {rank_sql()}, p.ts DESC, p.id DESC LIMIT 1
        """), dict(e=entity_id, a=asset_id, at=at, since=at - max_age)).first()
    return _resolved(row) if row else None


def load_day_prices(conn: Connection, entity: Entity, asset_id: int, day: date) -> list[ResolvedPrice]:
    """Every price of an asset inside close day ``day``, best first (what ``coinfrs prices show`` prints)."""
    rows = conn.execute(sa.text(
        f"""
        SELECT {_RESOLVED_COLUMNS} FROM prices p JOIN assets a ON a.id = p.asset_id
        WHERE p.entity_id = :e AND p.asset_id = :a AND p.ts > :wf AND p.ts <= :wt
        ORDER BY {rank_sql()}, p.ts DESC, p.id DESC
        """), dict(e=entity.id, a=asset_id, wf=cutoff_of(day - timedelta(days=1), entity.tz),
                   wt=cutoff_of(day, entity.tz))).all()
    return [_resolved(r) for r in rows]


def apply_prices_to_positions(conn: Connection, entity: Entity, start: date, end: date) -> int:
    """Set the close price of open days' positions to the best service price of the day (manual first).

    Positions keep the ledger's last trade price when the price service has nothing for the day.
    """
    return conn.execute(sa.text(
        f"""
        WITH best AS (
            SELECT DISTINCT ON (p.asset_id, {DAY_OF_SQL}) p.asset_id, {DAY_OF_SQL} AS day, p.price_usd, p.ts
            FROM prices p
            WHERE p.entity_id = :e AND p.source <> 'ledger' AND p.ts > :wf AND p.ts <= :wt
            ORDER BY p.asset_id, {DAY_OF_SQL}, {rank_sql()}, p.ts DESC, p.id DESC
        )
        UPDATE positions pos SET close_price_usd = b.price_usd, price_at = b.ts
        FROM best b
        WHERE pos.entity_id = :e AND pos.asset_id = b.asset_id AND pos.date = b.day
          AND NOT (pos.date = ANY(:locked))
          AND (pos.close_price_usd IS DISTINCT FROM b.price_usd OR pos.price_at IS DISTINCT FROM b.ts)
        """), dict(e=entity.id, tz=entity.timezone, wf=cutoff_of(start - timedelta(days=1), entity.tz),
                   wt=cutoff_of(end, entity.tz), locked=sorted(locked_dates(conn, entity.id, start, end)))).rowcount


@dataclass(frozen=True)
class Converted:
    amount: Decimal
    currency: str
    rate: ResolvedPrice | None  # None for USD


def convert_from_usd(conn: Connection, entity_id: int, amount_usd: Decimal, at: datetime, currency: str, *,
                     max_age: timedelta = timedelta(days=1)) -> Converted:
    """A USD amount at instant ``at`` in a reporting currency, with the rate used (18 fractional digits)."""
    code = currency.strip().upper()
    if code == "USD":
        return Converted(amount_usd, "USD", None)
    asset_id = conn.execute(sa.select(assets.c.id).where(assets.c.symbol == code, assets.c.is_fiat.is_(True))).scalar()
    rate = load_price(conn, entity_id, asset_id, at, max_age=max_age) if asset_id is not None else None
    if rate is None:
        raise PriceNotFound(f"no {code}/USD rate within {max_age} before {at.isoformat()} "
                            f"(run `coinfrs prices fetch` with a price source configured)")
    with exact_context():
        return Converted(quantize(amount_usd / rate.price_usd), code, rate)


def load_coingecko_ids(conn: Connection, asset_ids: Iterable[int], overrides: dict[str, str] | None = None,
                       defaults: dict[str, str] | None = None) -> dict[int, str]:
    """CoinGecko coin id of each asset: the registry's 'coingecko' alias, after registering defaults and overrides."""
    wanted = sorted(set(asset_ids))
    if not wanted:
        return {}
    symbols = dict(conn.execute(sa.select(assets.c.id, assets.c.symbol).where(assets.c.id.in_(wanted))).all())
    configured = {**(defaults or {}), **(overrides or {})}
    new = [dict(asset_id=i, source="coingecko", alias=configured[s]) for i, s in symbols.items() if s in configured]
    if new:
        conn.execute(sa.dialects.postgresql.insert(asset_aliases).values(new)
                     .on_conflict_do_nothing(index_elements=["source", "alias"]))
    registered = conn.execute(sa.select(asset_aliases.c.asset_id, asset_aliases.c.alias)
                              .where(asset_aliases.c.source == "coingecko", asset_aliases.c.asset_id.in_(wanted))
                              .order_by(asset_aliases.c.alias)).all()
    result: dict[int, str] = {}
    for row in registered:
        result.setdefault(row.asset_id, row.alias)
    for asset_id, symbol in symbols.items():  # an explicit override wins over an older alias
        if overrides and symbol in overrides:
            result[asset_id] = overrides[symbol]
    return result


# ----------------------------------------------------------------------------- derived prices: trade, peg

_TRADE_PRICES_SQL = """
WITH sides AS (
    SELECT l.id, l.group_id, l.ts, l.close_date, l.asset_id, l.quantity, l.unit_price_usd, a.symbol, a.is_fiat,
           (a.is_fiat AND a.symbol = 'USD') OR (NOT a.is_fiat AND a.symbol = ANY(:pegs)) AS usd_like,
           count(*) OVER (PARTITION BY l.group_id) AS sides
    FROM transactions l JOIN assets a ON a.id = l.asset_id
    WHERE l.entity_id = :e AND l.close_date BETWEEN :s AND :t AND l.leg_index IN (0, 1) AND l.quantity <> 0
      AND NOT a.unverified
)
INSERT INTO prices (entity_id, asset_id, ts, price_usd, source, resolution, pair, note, leg_id)
SELECT :e, c.asset_id, c.ts, round(abs(q.quantity)::numeric(1000, 40) / abs(c.quantity), 18), 'trade', 'trade',
       c.symbol || '/' || q.symbol, 'implied by the entity''s trade (group ' || c.group_id || ')', c.id
FROM sides c JOIN sides q ON q.group_id = c.group_id AND q.id <> c.id
WHERE c.sides = 2 AND NOT c.is_fiat AND NOT c.usd_like AND q.usd_like AND sign(c.quantity) = -sign(q.quantity)
  AND c.unit_price_usd IS NULL AND NOT (c.close_date = ANY(:locked))
"""

_PEG_PRICES_SQL = """
INSERT INTO prices (entity_id, asset_id, ts, price_usd, source, resolution, pair, note)
SELECT :e, a.id, ((d::date + 1)::timestamp AT TIME ZONE :tz), 1, 'peg', 'day', a.symbol || '/USD',
       'stablecoin peg (COINFRS_PRICE_PEGS)'
FROM assets a CROSS JOIN generate_series(CAST(:s AS date) - 1, CAST(:t AS date), interval '1 day') d
WHERE a.symbol = ANY(:pegs) AND NOT a.is_fiat AND NOT a.unverified
  AND EXISTS (SELECT 1 FROM transactions l WHERE l.entity_id = :e AND l.asset_id = a.id AND l.close_date <= :t)
"""


@dataclass(frozen=True)
class DerivedPrices:
    trade: int
    peg: int
    flagged: int


def write_derived_prices(conn: Connection, entity: Entity, start: date, end: date, *, pegs: Sequence[str],
                         threshold: Decimal) -> DerivedPrices:
    """Rewrite the ``trade`` and ``peg`` prices of close days [start, end] (idempotent; locked days' trade prices
    are kept), flag pegs a market source disagrees with, and reprice the open days' positions."""
    params = dict(e=entity.id, s=start, t=end, tz=entity.timezone, pegs=sorted({p.upper() for p in pegs}),
                  locked=sorted(locked_dates(conn, entity.id, start, end)),
                  wf=cutoff_of(start - timedelta(days=2), entity.tz), wt=cutoff_of(end, entity.tz))
    conn.execute(sa.text(
        "DELETE FROM prices WHERE entity_id = :e AND source = 'trade' AND leg_id IN (SELECT id FROM transactions "
        "WHERE entity_id = :e AND close_date BETWEEN :s AND :t AND NOT (close_date = ANY(:locked)))"), params)
    conn.execute(sa.text("DELETE FROM prices WHERE entity_id = :e AND source = 'peg' AND ts > :wf AND ts <= :wt"),
                 params)
    trade = conn.execute(sa.text(_TRADE_PRICES_SQL), params).rowcount
    peg = conn.execute(sa.text(_PEG_PRICES_SQL), params).rowcount if params["pegs"] else 0
    flagged = 0
    if peg:
        peg_ids = conn.execute(sa.text("SELECT id FROM assets WHERE symbol = ANY(:pegs) AND NOT is_fiat"),
                               params).scalars().all()
        flagged = write_disagreement_flags(conn, entity, peg_ids, start - timedelta(days=1), end, threshold)
    apply_prices_to_positions(conn, entity, start, end)
    return DerivedPrices(trade, peg, flagged)
