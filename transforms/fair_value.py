"""Fair values for the cost-basis engine: a pure, in-memory lookup built from price rows.

The engine never reads the database: it asks a ``FairValues`` for "the USD price of asset A at
time T". The lookup is built from rows shaped like the ``prices`` table (entity_id, asset_id, ts,
price_usd, source, resolution), whatever wrote them: the ledger's own trade prices
(``source='ledger'``), the price service (``coingecko``, ``exchange``), or a manual price CSV
(``manual``). Rule (docs/cost-basis.md, "Fair value"):

1. Only prices at or before T count (no look-ahead).
2. Among the sources whose latest price at or before T is at most ``FRESH_FOR`` old (one day),
   the highest precedence wins: the configured order (``COINFRS_PRICE_SOURCE_ORDER``,
   transforms/price_order.py), by default manual > trade (implied by the entity's own trades against USD or a
   stablecoin) > peg (a stablecoin at 1 USD) > coingecko > exchange (``exchange:<id>``); then ledger
   (unknown sources rank last).
3. If no source is that fresh, the latest price at or before T of any source is used (stale but
   known), ties broken by the same precedence.
4. No price at or before T: ``None`` (the engine values the leg at zero and flags it).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Protocol

from sqlalchemy.engine import Connection
import sqlalchemy as sa

from transforms.price_order import category, precedence

FRESH_FOR = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def ts_key(ts: datetime) -> int:
    """A timestamp as exact integer microseconds since the epoch (no float)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return (ts - _EPOCH) // _US


class PriceLookup(Protocol):
    """What the engine asks for: the price of an asset at an instant (``FairValues``, or one translated into a
    reporting currency by ``transforms.fx.TranslatedFairValues``)."""

    def price_at(self, asset_id: int, ts: datetime) -> Decimal | None: ...


@dataclass(frozen=True)
class PriceRow:
    asset_id: int
    ts: datetime
    price_usd: Decimal
    source: str
    resolution: str = "trade"


@dataclass(frozen=True)
class FairValue:
    price_usd: Decimal
    ts: datetime
    source: str


class FairValues:
    """Per asset and source: timestamps in order and their prices; ``price_at`` does a binary search."""

    def __init__(self, rows: Iterable[PriceRow], order: Sequence[str] | None = None) -> None:
        """``order``: the source order (transforms/price_order.py); None: the configured one."""
        ranked = precedence(order)
        rank_of = {name: rank for rank, name in enumerate(ranked)}
        series: dict[int, dict[int, list[tuple[int, int, Decimal, datetime]]]] = {}
        for n, row in enumerate(rows):
            if row.price_usd is None or row.price_usd <= 0:
                continue
            series.setdefault(row.asset_id, {}).setdefault(rank_of.get(category(row.source), len(ranked)), []).append(
                (ts_key(row.ts), n, row.price_usd, row.ts))
        self._series: dict[int, list[tuple[int, str, list[int], list[Decimal], list[datetime]]]] = {}
        for asset_id, by_rank in series.items():
            entries = []
            for rank in sorted(by_rank):
                points = sorted(by_rank[rank])  # same instant: the row given last wins
                keys, prices, times = [], [], []
                for key, _, price, ts in points:
                    if keys and keys[-1] == key:
                        prices[-1], times[-1] = price, ts
                        continue
                    keys.append(key)
                    prices.append(price)
                    times.append(ts)
                source = ranked[rank] if rank < len(ranked) else "other"
                entries.append((rank, source, keys, prices, times))
            self._series[asset_id] = entries

    def lookup(self, asset_id: int, ts: datetime) -> FairValue | None:
        entries = self._series.get(asset_id)
        if not entries:
            return None
        at = ts_key(ts)
        fresh_after = at - FRESH_FOR // _US
        best: tuple[int, int, FairValue] | None = None  # (-key, rank) of the latest seen
        for rank, source, keys, prices, times in entries:
            i = bisect_right(keys, at) - 1
            if i < 0:
                continue
            if keys[i] >= fresh_after:
                return FairValue(prices[i], times[i], source)  # highest-precedence fresh source
            candidate = (-keys[i], rank, FairValue(prices[i], times[i], source))
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        return best[2] if best is not None else None

    def price_at(self, asset_id: int, ts: datetime) -> Decimal | None:
        found = self.lookup(asset_id, ts)
        return found.price_usd if found is not None else None


def map_ledger_prices(legs: Iterable[object]) -> list[PriceRow]:
    """The ledger's own trade prices (non-fiat legs with a positive unit price), as price rows."""
    return [PriceRow(leg.asset_id, leg.ts, leg.unit_price_usd, "ledger", "trade")  # type: ignore[attr-defined]
            for leg in legs
            if getattr(leg, "unit_price_usd", None) is not None and leg.unit_price_usd > 0  # type: ignore[attr-defined]
            and not leg.is_fiat]  # type: ignore[attr-defined]


def usd_identity(conn: Connection) -> list[PriceRow]:
    """USD is worth 1 USD at every instant: a fiat leg in USD without its own value (an exchange's USD fee) is valued
    at its quantity, never at zero."""
    usd = conn.execute(sa.text("SELECT id FROM assets WHERE symbol = 'USD' AND is_fiat")).scalar()
    return [PriceRow(usd, _EPOCH, Decimal(1), "fiat", "point")] if usd is not None else []


def load_fair_values(conn: Connection, entity_id: int, up_to: datetime | None = None) -> FairValues:
    """A lookup over the entity's ``prices`` rows (every source), optionally up to ``up_to``, and USD at 1."""
    query = "SELECT asset_id, ts, price_usd, source, resolution FROM prices WHERE entity_id = :e"
    params: dict[str, object] = dict(e=entity_id)
    if up_to is not None:
        query += " AND ts <= :t"
        params["t"] = up_to
    rows = conn.execute(sa.text(query + " ORDER BY id"), params)
    return FairValues([*usd_identity(conn), *(PriceRow(r.asset_id, r.ts, r.price_usd, r.source, r.resolution)
                                              for r in rows)])
