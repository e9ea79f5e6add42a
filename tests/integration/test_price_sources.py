"""The real price connectors (requests for CoinGecko, ccxt for Binance candles) against a local server on
127.0.0.1 speaking their formats: exact decimals, the API key header, retries on 429/5xx only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ingestion.prices.coingecko import CoinGeckoClient
from ingestion.prices.exchange import ExchangeCandles, make_exchange
from ingestion.prices.points import resolution_of
from ingestion.prices.retry import PriceSourceError, RateLimiter, RetryPolicy, TransientSourceError
from tests.integration.price_servers import PriceServer

D0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.05)


@pytest.fixture()
def server():
    with PriceServer() as s:
        s.state.add_chart("bitcoin", "usd", [(D0 + timedelta(days=i), f"{87000 + i}.123456789012") for i in range(5)])
        s.state.add_daily_klines("BTC", "USDT", [(D0 + timedelta(days=i), f"{87010 + i}.10000000") for i in range(5)])
        yield s


def client(server: PriceServer, **kwargs) -> CoinGeckoClient:
    return CoinGeckoClient(server.url, min_interval=0, retry=FAST, **kwargs)


def test_coingecko_market_chart_is_parsed_exactly_and_sends_the_key_header(server) -> None:
    server.state.api_key = "cg-secret-123"
    points = client(server, api_key="cg-secret-123").fetch_market_chart_range("bitcoin", "usd", D0, D0 + timedelta(days=2))
    assert [(p.ts, p.price) for p in points] == [
        (D0, Decimal("87000.123456789012")), (D0 + timedelta(days=1), Decimal("87001.123456789012")),
        (D0 + timedelta(days=2), Decimal("87002.123456789012"))]
    assert all(type(p.price) is Decimal for p in points)
    request = server.state.requests[-1]
    assert request.path == "/api/v3/coins/bitcoin/market_chart/range"
    assert request.query == {"vs_currency": "usd", "from": str(int(D0.timestamp())),
                             "to": str(int((D0 + timedelta(days=2)).timestamp()))}
    assert request.headers["x-cg-demo-api-key"] == "cg-secret-123"
    assert resolution_of(points) == "day"


def test_coingecko_401_is_not_retried_and_the_key_is_not_in_the_error(server) -> None:
    server.state.api_key = "the-right-key"
    with pytest.raises(PriceSourceError) as info:
        client(server, api_key="a-wrong-key").fetch_market_chart_range("bitcoin", "usd", D0, D0 + timedelta(days=1))
    assert not isinstance(info.value, TransientSourceError)
    assert "HTTP 401" in str(info.value) and "a-wrong-key" not in str(info.value)
    assert len(server.state.paths("/api/v3/coins")) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_coingecko_transient_errors_are_retried(server, status: int) -> None:
    server.state.fail("/api/v3/coins", status, times=2)
    points = client(server).fetch_market_chart_range("bitcoin", "usd", D0, D0 + timedelta(days=1))
    assert len(points) == 2
    assert len(server.state.paths("/api/v3/coins")) == 3


def test_coingecko_gives_up_after_the_configured_attempts(server) -> None:
    server.state.fail("/api/v3/coins", 503, times=5)
    with pytest.raises(TransientSourceError, match="HTTP 503"):
        client(server).fetch_market_chart_range("bitcoin", "usd", D0, D0 + timedelta(days=1))
    assert len(server.state.paths("/api/v3/coins")) == FAST.attempts


def test_coingecko_retry_after_is_honoured(server) -> None:
    import time

    server.state.fail("/api/v3/coins", 429, headers={"Retry-After": "1"})
    started = time.monotonic()
    CoinGeckoClient(server.url, min_interval=0, retry=RetryPolicy(3, 0.01, 5.0)).fetch_market_chart_range(
        "bitcoin", "usd", D0, D0 + timedelta(days=1))
    assert time.monotonic() - started >= 1.0


def test_coingecko_unknown_coin_is_a_clear_error(server) -> None:
    with pytest.raises(PriceSourceError, match="HTTP 404"):
        client(server).fetch_market_chart_range("no-such-coin", "usd", D0, D0 + timedelta(days=1))
    assert len(server.state.paths("/api/v3/coins")) == 1


def test_rate_limiter_spaces_requests() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2.5, clock=lambda: now[0], sleep=sleep)
    limiter.wait()
    now[0] += 1.0
    limiter.wait()
    limiter.wait()
    assert slept == [1.5, 2.5]


def candles(server: PriceServer) -> ExchangeCandles:
    return ExchangeCandles(make_exchange("binance", api_url=server.url), quote="USDT", retry=FAST)


def test_binance_candles_through_ccxt_are_exact_and_stamped_at_the_close(server) -> None:
    source = candles(server)
    assert source.pair_for("BTC") == "BTC/USDT"
    assert source.pair_for("DOGE") is None
    points = source.fetch_closes("BTC/USDT", D0, D0 + timedelta(days=3))
    assert [(p.ts, p.price) for p in points] == [
        (D0 + timedelta(days=1), Decimal("87010.10000000")), (D0 + timedelta(days=2), Decimal("87011.10000000")),
        (D0 + timedelta(days=3), Decimal("87012.10000000"))]
    kline = server.state.requests[-1]
    assert kline.path == "/api/v3/klines" and kline.query["symbol"] == "BTCUSDT" and kline.query["interval"] == "1d"
    assert kline.query["startTime"] == str(int(D0.timestamp()) * 1000)


@pytest.mark.parametrize("status", [429, 503])
def test_binance_transient_errors_are_retried(server, status: int) -> None:
    source = candles(server)
    source.pair_for("BTC")
    server.state.fail("/api/v3/klines", status, times=2)
    assert len(source.fetch_closes("BTC/USDT", D0, D0 + timedelta(days=1))) == 1
    assert len(server.state.paths("/api/v3/klines")) == 3


def test_binance_401_is_not_retried(server) -> None:
    source = candles(server)
    source.pair_for("BTC")
    server.state.fail("/api/v3/klines", 401)
    with pytest.raises(PriceSourceError) as info:
        source.fetch_closes("BTC/USDT", D0, D0 + timedelta(days=1))
    assert not isinstance(info.value, TransientSourceError)
    assert len(server.state.paths("/api/v3/klines")) == 1


def test_binance_pages_past_the_candle_limit(server, monkeypatch) -> None:
    import ingestion.prices.exchange as exchange_module

    monkeypatch.setattr(exchange_module, "PAGE_LIMIT", 2)
    points = candles(server).fetch_closes("BTC/USDT", D0, D0 + timedelta(days=5))
    assert [p.price for p in points] == [Decimal(f"{87010 + i}.10000000") for i in range(5)]
    assert len(server.state.paths("/api/v3/klines")) == 3
