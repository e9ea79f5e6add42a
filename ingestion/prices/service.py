"""The price service: fetch close prices once, cache them in ``prices`` with provenance, flag disagreements.

``fetch_prices`` works per entity and day range. For each asset and source it first looks at what the
``prices`` table already holds (the cache) and asks the source only for the days still missing. Network
calls run outside any database transaction; the rows, the disagreement flags and the positions' close
prices are then written in one transaction. A source that fails is reported per asset (the fetch is
partial and says so); it never removes prices already stored.

FX: with CoinGecko, the USD rate of EUR or GBP is bitcoin/usd ÷ bitcoin/<ccy> at the same instant; with an
exchange, the close of ``EUR/<quote>``. Either is stored as the price of the fiat asset in USD.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ingestion.prices import SOURCE_COINGECKO, PriceSourceError, exchange_source
from ingestion.prices.coingecko import CoinGeckoClient
from ingestion.prices.exchange import ExchangeCandles, make_exchange
from ingestion.prices.points import PricePoint, resolution_of
from ingestion.prices.retry import RetryPolicy
from ingestion.prices.settings import DEFAULT_COINGECKO_IDS, PriceSettings
from transforms.asset_registry import ensure_assets
from transforms.prices import (PriceRow, apply_prices_to_positions, compute_cross_rates, compute_day_closes,
                               existing_service_days, load_coingecko_ids, write_disagreement_flags, write_price_rows)
from warehouse.calendar import cutoff_of, days_between
from warehouse.entities import Entity

log = logging.getLogger(__name__)
SOURCE_KINDS = ("coingecko", "exchange")
FX_REFERENCE_COIN = "bitcoin"


@dataclass
class Outcome:
    """What one source did for one asset."""

    asset: str
    source: str
    pair: str | None = None
    cached_days: int = 0
    fetched_days: int = 0
    missing_days: int = 0
    error: str | None = None
    skipped: str | None = None


@dataclass
class FetchReport:
    entity: str
    start: date
    end: date
    outcomes: list[Outcome] = field(default_factory=list)
    rows_written: int = 0
    flagged: int = 0
    positions_repriced: int = 0
    configured: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error]


@dataclass
class PriceSources:
    coingecko: CoinGeckoClient | None = None
    exchange: ExchangeCandles | None = None

    @property
    def names(self) -> list[str]:
        return ([SOURCE_COINGECKO] if self.coingecko else []) + (
            [exchange_source(self.exchange.exchange_id)] if self.exchange else [])


def build_sources(settings: PriceSettings, kinds: Iterable[str] = SOURCE_KINDS) -> PriceSources:
    """Clients for the configured sources among ``kinds``; none configured gives no client (offline)."""
    wanted = set(kinds)
    policy = RetryPolicy(attempts=settings.price_retry_attempts, initial_seconds=settings.price_retry_initial_wait,
                         max_seconds=settings.price_retry_max_wait)
    sources = PriceSources()
    if "coingecko" in wanted and settings.coingecko_enabled:
        key = settings.coingecko_api_key.get_secret_value() if settings.coingecko_api_key else None
        sources.coingecko = CoinGeckoClient(settings.coingecko_url or "", api_key=key,
                                            api_key_header=settings.coingecko_api_key_header,
                                            timeout=settings.price_timeout_seconds,
                                            min_interval=settings.coingecko_min_interval_seconds, retry=policy)
    if "exchange" in wanted and settings.exchange_enabled:
        exchange = make_exchange(settings.price_exchange or "", api_url=settings.price_exchange_url,
                                 timeout=settings.price_timeout_seconds)
        sources.exchange = ExchangeCandles(exchange, quote=settings.price_exchange_quote, retry=policy)
    return sources


def held_asset_ids(conn: Connection, entity: Entity, start: date, end: date) -> list[int]:
    """Non-fiat assets with a position (computed or reported, non-zero) on a day of [start, end]."""
    return list(conn.execute(sa.text(
        """
        SELECT DISTINCT p.asset_id FROM positions p JOIN assets a ON a.id = p.asset_id
        WHERE p.entity_id = :e AND p.date BETWEEN :s AND :t AND NOT a.is_fiat
          AND (p.computed_quantity <> 0 OR coalesce(p.reported_quantity, 0) <> 0)
        ORDER BY 1
        """), dict(e=entity.id, s=start, t=end)).scalars())


def _asset_ids(conn: Connection, symbols: Iterable[str]) -> dict[str, int]:
    wanted = sorted({s.strip().upper() for s in symbols if s.strip()})
    found = dict(conn.execute(sa.text("SELECT symbol, id FROM assets WHERE symbol = ANY(:s)"), dict(s=wanted)).all())
    unknown = [s for s in wanted if s not in found]
    if unknown:
        raise ValueError(f"unknown asset(s) {', '.join(unknown)}: not in the asset registry")
    return found


def _span(days: list[date], entity: Entity) -> tuple[datetime, datetime]:
    return cutoff_of(min(days) - timedelta(days=1), entity.tz), cutoff_of(max(days), entity.tz)


@dataclass
class _Job:
    asset_id: int
    symbol: str
    outcome: Outcome
    missing: list[date]


def fetch_prices(engine: Engine, entity: Entity, start: date, end: date, *, settings: PriceSettings,
                 sources: PriceSources | None = None, symbols: Iterable[str] | None = None,
                 now: datetime | None = None) -> FetchReport:
    """Fetch and cache the close prices of [start, end] (held assets, or ``symbols``) and the FX rates."""
    now = now or datetime.now(timezone.utc)
    sources = sources if sources is not None else build_sources(settings)
    report = FetchReport(entity.name, start, end, configured=sources.names)
    days = [d for d in days_between(start, end) if cutoff_of(d, entity.tz) <= now]
    if not sources.names or not days:
        return report
    currencies = settings.currencies()
    with engine.begin() as conn:
        crypto = _asset_ids(conn, symbols) if symbols else dict(conn.execute(sa.text(
            "SELECT symbol, id FROM assets WHERE id = ANY(:ids)"), dict(ids=held_asset_ids(conn, entity, start, end))).all())
        crypto = {s: i for s, i in crypto.items() if s not in currencies and s != "USD"}
        fiat = ensure_assets(conn, currencies) if currencies else {}
        coin_ids = load_coingecko_ids(conn, crypto.values(), settings.coingecko_id_overrides(), DEFAULT_COINGECKO_IDS)
        jobs: dict[str, list[_Job]] = {}
        for source in sources.names:
            for symbol, asset_id in [*sorted(crypto.items()), *sorted(fiat.items())]:
                cached = existing_service_days(conn, entity, asset_id, source, start, end)
                missing = [d for d in days if d not in cached]
                outcome = Outcome(symbol, source, cached_days=len(days) - len(missing))
                report.outcomes.append(outcome)
                if missing:
                    jobs.setdefault(source, []).append(_Job(asset_id, symbol, outcome, missing))

    rows: list[PriceRow] = []
    if sources.coingecko:
        rows += _fetch_coingecko(sources.coingecko, entity, jobs.get(SOURCE_COINGECKO, []), coin_ids, set(fiat), now)
    if sources.exchange:
        rows += _fetch_exchange(sources.exchange, entity, jobs.get(exchange_source(sources.exchange.exchange_id), []),
                                now)

    with engine.begin() as conn:
        report.rows_written = write_price_rows(conn, entity.id, rows)
        report.flagged = write_disagreement_flags(conn, entity, [*crypto.values(), *fiat.values()], start, end,
                                                  settings.price_disagreement_threshold)
        report.positions_repriced = apply_prices_to_positions(conn, entity, start, end)
    for outcome in report.errors:
        log.warning("prices %s %s: %s", outcome.source, outcome.asset, outcome.error)
    return report


def _closes_rows(job: _Job, points: list[PricePoint], entity: Entity, now: datetime, source: str, pair: str,
                 note: str | None = None) -> list[PriceRow]:
    closes = compute_day_closes(points, job.missing, entity.tz, now=now)
    job.outcome.pair = pair
    job.outcome.fetched_days = len(closes)
    job.outcome.missing_days = len(job.missing) - len(closes)
    resolution = resolution_of(points)
    return [PriceRow(job.asset_id, p.ts, p.price, source, resolution, pair, note) for p in closes.values()]


def _fetch_coingecko(client: CoinGeckoClient, entity: Entity, jobs: list[_Job], coin_ids: dict[int, str],
                     fiat: set[str], now: datetime) -> list[PriceRow]:
    rows: list[PriceRow] = []
    series: dict[tuple[str, str, datetime, datetime], list[PricePoint]] = {}

    def chart(coin: str, vs: str, days: list[date]) -> list[PricePoint]:
        frm, to = _span(days, entity)
        key = (coin, vs, frm, to)
        if key not in series:
            series[key] = client.fetch_market_chart_range(coin, vs, frm, to)
        return series[key]

    for job in jobs:
        try:
            if job.symbol in fiat:
                usd_points = chart(FX_REFERENCE_COIN, "usd", job.missing)
                other_points = chart(FX_REFERENCE_COIN, job.symbol.lower(), job.missing)
                usd = compute_day_closes(usd_points, job.missing, entity.tz, now=now)
                other = compute_day_closes(other_points, job.missing, entity.tz, now=now)
                rates = compute_cross_rates(usd, other)
                pair = f"{job.symbol}/USD"
                note = f"{FX_REFERENCE_COIN}/usd ÷ {FX_REFERENCE_COIN}/{job.symbol.lower()}"
                rows += _closes_rows(job, list(rates.values()), entity, now, SOURCE_COINGECKO, pair, note)
                continue
            coin = coin_ids.get(job.asset_id)
            if coin is None:
                job.outcome.skipped = "no CoinGecko id (add an asset_aliases row with source 'coingecko' or COINFRS_COINGECKO_IDS)"
                continue
            rows += _closes_rows(job, chart(coin, "usd", job.missing), entity, now, SOURCE_COINGECKO, f"{coin}/usd")
        except PriceSourceError as exc:
            job.outcome.error = str(exc)
    return rows


def _fetch_exchange(candles: ExchangeCandles, entity: Entity, jobs: list[_Job], now: datetime) -> list[PriceRow]:
    rows: list[PriceRow] = []
    source = exchange_source(candles.exchange_id)
    utc = all(entity.tz.utcoffset(datetime(2020, m, 1)) == timedelta(0) for m in (1, 7))
    timeframe = "1d" if utc else "1h"
    for job in jobs:
        try:
            if job.symbol == candles.quote:
                job.outcome.skipped = f"{job.symbol} is the quote currency ({candles.quote} taken as USD)"
                continue
            pair = candles.pair_for(job.symbol)
            if pair is None:
                job.outcome.skipped = f"{candles.exchange_id} lists no {job.symbol}/{candles.quote} market"
                continue
            frm, to = _span(job.missing, entity)
            points = candles.fetch_closes(pair, frm, to, timeframe)
            rows += _closes_rows(job, points, entity, now, source, pair)
        except PriceSourceError as exc:
            job.outcome.error = str(exc)
    return rows
