"""The price service against real PostgreSQL and the local CoinGecko/Binance server: fetch once and cache,
provenance on every row, the disagreement flag, FX rates and conversion, precedence, positions repriced."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from ingestion.csv_files import CsvFile, import_csv
from ingestion.prices.manual import read_manual_prices, write_manual_prices
from ingestion.prices.settings import PriceSettings
from ingestion.prices.service import build_sources, fetch_prices
from tests.integration.price_servers import PriceServer
from transforms.asset_registry import ensure_assets
from transforms.canonical import build_canonical
from transforms.prices import PriceNotFound, convert_from_usd, load_day_prices, load_price
from warehouse.entities import get_or_create_entity

D0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 1, 10, 12, tzinfo=timezone.utc)
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 4)

LEDGER = """id,timestamp,action,asset,quantity,unit_price_usd,fee_asset,fee_amount,quote_asset,quote_quantity,account,tx_hash,external_id,notes
L1,2026-01-01T09:00:00Z,INCOME,USD,100000,1,,,,,Bank,,,
L2,2026-01-01T10:00:00Z,BUY,BTC,1,86000,,,USD,86000,Bank,,,
L3,2026-01-02T10:00:00Z,STAKING_REWARD,ETH,2,3000,,,,,Bank,,,
"""


def settings_for(server: PriceServer, **extra) -> PriceSettings:
    values = dict(coingecko_url=server.url, coingecko_min_interval_seconds=0, price_exchange="binance",
                  price_exchange_url=server.url, price_retry_attempts=2, price_retry_initial_wait=0.01,
                  price_retry_max_wait=0.02)
    return PriceSettings(**{**values, **extra})


@pytest.fixture()
def server():
    with PriceServer() as s:
        days = [D0 + timedelta(days=i) for i in range(8)]
        s.state.add_chart("bitcoin", "usd", [(t, f"{90000 + 1000 * i}.5") for i, t in enumerate(days)])
        s.state.add_chart("bitcoin", "eur", [(t, f"{75000 + 1000 * i}") for i, t in enumerate(days)])
        s.state.add_chart("bitcoin", "gbp", [(t, f"{67000 + 1000 * i}") for i, t in enumerate(days)])
        s.state.add_chart("ethereum", "usd", [(t, f"{3000 + 10 * i}.25") for i, t in enumerate(days)])
        # Binance: BTC agrees with CoinGecko within 2% every day except the close of Jan 3 (+3%).
        btc = [(D0 + timedelta(days=i - 1), f"{90000 + 1000 * i}.5") for i in range(1, 8)]
        btc[2] = (btc[2][0], str(Decimal("93000.5") * Decimal("1.03")))
        s.state.add_daily_klines("BTC", "USDT", btc)
        s.state.add_daily_klines("ETH", "USDT", [(D0 + timedelta(days=i - 1), f"{3000 + 10 * i}.25") for i in range(1, 8)])
        yield s


@pytest.fixture()
def entity(engine):
    with engine.begin() as conn:
        record = get_or_create_entity(conn, "acme")
        import_csv(conn, record.id, "ledger", CsvFile("ledger.csv", LEDGER))
        build_canonical(conn, record, FIRST, LAST)
    return record


def asset_id(conn, symbol: str) -> int:
    return conn.execute(sa.text("SELECT id FROM assets WHERE symbol = :s"), dict(s=symbol)).scalar_one()


def test_fetch_stores_day_closes_with_provenance_and_caches_them(engine, entity, server) -> None:
    settings = settings_for(server, price_exchange=None)
    report = fetch_prices(engine, entity, FIRST, LAST, settings=settings, now=NOW)
    assert not report.errors, report.errors
    assert {(o.asset, o.fetched_days) for o in report.outcomes} == {("BTC", 4), ("ETH", 4), ("EUR", 4), ("GBP", 4)}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.symbol, p.ts, p.price_usd, p.source, p.pair, p.resolution, p.fetched_at, p.note, p.leg_id "
            "FROM prices p JOIN assets a ON a.id = p.asset_id WHERE p.source = 'coingecko' ORDER BY 1, 2")).all()
    btc = [r for r in rows if r.symbol == "BTC"]
    # the close of Jan 1 is CoinGecko's point at Jan 2 00:00 UTC
    assert [(r.ts, r.price_usd) for r in btc] == [(D0 + timedelta(days=i), Decimal(f"{90000 + 1000 * i}.5"))
                                                  for i in range(1, 5)]
    assert {(r.pair, r.resolution, r.leg_id) for r in btc} == {("bitcoin/usd", "day", None)}
    assert all(r.fetched_at is not None for r in rows)
    eur = [r for r in rows if r.symbol == "EUR"]
    assert eur[0].pair == "EUR/USD" and eur[0].note == "bitcoin/usd ÷ bitcoin/eur"
    assert eur[0].price_usd == Decimal("91000.5") / Decimal("76000")

    calls = len(server.state.paths("/api/v3/coins"))
    again = fetch_prices(engine, entity, FIRST, LAST, settings=settings, now=NOW)
    assert len(server.state.paths("/api/v3/coins")) == calls  # served from the prices table
    assert {o.cached_days for o in again.outcomes} == {4} and again.rows_written == 0
    more = fetch_prices(engine, entity, FIRST, date(2026, 1, 5), settings=settings, now=NOW)
    assert {(o.asset, o.fetched_days) for o in more.outcomes} == {("BTC", 1), ("ETH", 1), ("EUR", 1), ("GBP", 1)}
    assert all(r.query["from"] == str(int((D0 + timedelta(days=4)).timestamp()))
               for r in server.state.requests[calls:])


def test_two_sources_disagreeing_by_more_than_the_threshold_flag_the_price(engine, entity, server) -> None:
    report = fetch_prices(engine, entity, FIRST, LAST, settings=settings_for(server), symbols=["BTC", "ETH"], now=NOW)
    assert not report.errors, report.errors
    with engine.connect() as conn:
        btc = asset_id(conn, "BTC")
        flagged = conn.execute(sa.text(
            "SELECT ts, source, pair, disagreement FROM prices WHERE asset_id = :a AND flagged ORDER BY source"),
            dict(a=btc)).all()
        jan3 = load_day_prices(conn, entity, btc, date(2026, 1, 3))
        jan2 = load_day_prices(conn, entity, btc, date(2026, 1, 2))
        eth_flags = conn.execute(sa.text("SELECT count(*) FROM prices WHERE asset_id = :a AND flagged"),
                                 dict(a=asset_id(conn, "ETH"))).scalar_one()
    assert [(r.ts, r.source, r.pair) for r in flagged] == [
        (D0 + timedelta(days=3), "coingecko", "bitcoin/usd"), (D0 + timedelta(days=3), "exchange:binance", "BTC/USDT")]
    assert flagged[0].disagreement == Decimal("0.03")
    assert [p.source for p in jan3] == ["coingecko", "exchange:binance"] and all(p.flagged for p in jan3)
    assert not any(p.flagged for p in jan2) and jan2[0].disagreement == Decimal(0)
    assert eth_flags == 0 and report.flagged == 2

    strict = settings_for(server, price_disagreement_threshold=Decimal("0.031"))
    with engine.begin() as conn:
        from transforms.prices import write_disagreement_flags

        assert write_disagreement_flags(conn, entity, [btc], FIRST, LAST, strict.price_disagreement_threshold) == 0


def test_manual_prices_override_both_sources_and_reprice_positions(engine, entity, server) -> None:
    fetch_prices(engine, entity, FIRST, LAST, settings=settings_for(server), symbols=["BTC"], now=NOW)
    text = "asset,timestamp,price_usd,source_note\nBTC,2026-01-02,95000,auditor's valuation\n"
    with engine.begin() as conn:
        result = write_manual_prices(conn, entity, "manual.csv", read_manual_prices(CsvFile("manual.csv", text)),
                                     threshold=Decimal("0.02"))
        chosen = load_price(conn, entity.id, asset_id(conn, "BTC"), datetime(2026, 1, 3, tzinfo=timezone.utc))
        position = conn.execute(sa.text(
            "SELECT close_price_usd, price_at FROM positions WHERE asset_id = :a AND date = '2026-01-02'"),
            dict(a=asset_id(conn, "BTC"))).one()
        untouched = conn.execute(sa.text(
            "SELECT close_price_usd FROM positions WHERE asset_id = :a AND date = '2026-01-01'"),
            dict(a=asset_id(conn, "BTC"))).scalar_one()
    assert result.rows == 1 and result.written == 1
    assert (chosen.source, chosen.price_usd, chosen.note, chosen.resolution) == ("manual", Decimal("95000"),
                                                                               "auditor's valuation", "day")
    assert chosen.flagged and chosen.disagreement > Decimal("0.02")  # 95000 vs 92000.5
    assert position == (Decimal("95000"), datetime(2026, 1, 3, tzinfo=timezone.utc))
    assert untouched == Decimal("91000.5")  # CoinGecko's close beats the ledger's trade price


def test_fx_conversion_uses_the_stored_rate(engine, entity, server) -> None:
    fetch_prices(engine, entity, FIRST, LAST, settings=settings_for(server, price_exchange=None), symbols=["BTC"], now=NOW)
    at = datetime(2026, 1, 3, tzinfo=timezone.utc)
    with engine.connect() as conn:
        eur = convert_from_usd(conn, entity.id, Decimal("1000"), at, "eur")
        gbp = convert_from_usd(conn, entity.id, Decimal("1000"), at, "GBP")
        usd = convert_from_usd(conn, entity.id, Decimal("1000"), at, "USD")
        with pytest.raises(PriceNotFound, match="EUR/USD"):
            convert_from_usd(conn, entity.id, Decimal("1"), datetime(2025, 6, 1, tzinfo=timezone.utc), "EUR")
    rate = Decimal("92000.5") / Decimal("77000")  # bitcoin/usd ÷ bitcoin/eur at Jan 3 00:00 UTC
    assert eur.rate is not None and eur.rate.pair == "EUR/USD" and eur.rate.source == "coingecko"
    assert eur.amount == (Decimal("1000") / eur.rate.price_usd).quantize(Decimal("1e-18"))
    assert abs(eur.amount - Decimal("1000") / rate) < Decimal("1e-12")
    assert gbp.amount < eur.amount < Decimal("1000") and usd.amount == Decimal("1000") and usd.rate is None


def test_a_failing_source_makes_the_fetch_partial_not_empty(engine, entity, server) -> None:
    server.state.fail("/api/v3/klines", 503, times=10)
    report = fetch_prices(engine, entity, FIRST, LAST, settings=settings_for(server), symbols=["BTC"], now=NOW)
    assert [(o.asset, o.source) for o in report.errors] == [("BTC", "exchange:binance")]
    assert "HTTP" in report.errors[0].error or "ExchangeNotAvailable" in report.errors[0].error
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM prices WHERE source = 'coingecko' AND asset_id = :a"),
                            dict(a=asset_id(conn, "BTC"))).scalar_one() == 4


def test_no_configured_source_makes_no_request(engine, entity) -> None:
    settings = PriceSettings()
    assert not settings.any_source and build_sources(settings).names == []
    report = fetch_prices(engine, entity, FIRST, LAST, settings=settings, now=NOW)
    assert report.outcomes == [] and report.configured == []


def test_an_entity_outside_utc_gets_hourly_candles_closing_at_its_local_midnight(engine, server) -> None:
    hours = [D0 - timedelta(hours=2) + timedelta(hours=h) for h in range(60)]
    server.state.add_daily_klines("SOL", "USDT", [(t, f"{200 + h}.5") for h, t in enumerate(hours)])
    with engine.begin() as conn:
        zurich = get_or_create_entity(conn, "zurich-fund", "Europe/Zurich")
        ensure_assets(conn, ["SOL"])
    settings = settings_for(server, coingecko_url=None, price_currencies="")
    report = fetch_prices(engine, zurich, FIRST, date(2026, 1, 2), settings=settings, symbols=["SOL"], now=NOW)
    assert not report.errors, report.errors
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT ts, price_usd, resolution, pair FROM prices ORDER BY ts")).all()
    # Jan 1 in Zurich ends at 23:00 UTC: the candle 22:00-23:00 UTC (the 25th hour of the series) closes it
    assert [(r.ts, r.price_usd, r.resolution, r.pair) for r in rows] == [
        (datetime(2026, 1, 1, 23, tzinfo=timezone.utc), Decimal("224.5"), "hour", "SOL/USDT"),
        (datetime(2026, 1, 2, 23, tzinfo=timezone.utc), Decimal("248.5"), "hour", "SOL/USDT")]
    assert {r.query["interval"] for r in server.state.requests if r.path == "/api/v3/klines"} == {"1h"}


def test_the_configured_source_order_decides_which_source_values_the_day(engine, entity, server, monkeypatch) -> None:
    """COINFRS_PRICE_SOURCE_ORDER (transforms/price_order.py): with the exchange first, Binance's close of Jan 3
    (+3 %) values the day instead of CoinGecko's, for the position's close price and ``load_price``."""
    from ingestion.prices.settings import get_price_settings
    from transforms.prices import apply_prices_to_positions

    fetch_prices(engine, entity, FIRST, LAST, settings=settings_for(server), symbols=["BTC"], now=NOW)
    day_end = datetime(2026, 1, 4, tzinfo=timezone.utc)

    def chosen() -> tuple:
        with engine.begin() as conn:
            apply_prices_to_positions(conn, entity, FIRST, LAST)
            price = load_price(conn, entity.id, asset_id(conn, "BTC"), day_end)
            close = conn.execute(sa.text("SELECT close_price_usd FROM positions WHERE asset_id = :a AND date = '2026-01-03'"),
                                 dict(a=asset_id(conn, "BTC"))).scalar_one()
        return price.source, close

    assert chosen() == ("coingecko", Decimal("93000.5"))  # the default order: CoinGecko before exchange candles
    monkeypatch.setenv("COINFRS_PRICE_SOURCE_ORDER", "exchange,coingecko")
    get_price_settings.cache_clear()
    try:
        assert chosen() == ("exchange:binance", Decimal("93000.5") * Decimal("1.03"))
    finally:
        monkeypatch.delenv("COINFRS_PRICE_SOURCE_ORDER")
        get_price_settings.cache_clear()
