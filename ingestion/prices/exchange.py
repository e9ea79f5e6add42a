"""Exchange candles through ccxt ``fetch_ohlcv``: the close of each candle, exact.

The real ccxt client is used; ``api_url`` (COINFRS_PRICE_EXCHANGE_URL) rewrites every entry of
``exchange.urls['api']`` to another host, keeping each path (a mirror, or a local server in tests).
``exchange.number = str`` makes ccxt hand back the exchange's own decimal strings instead of floats.
What is retried is decided by the one ccxt classification of every connector (``ingestion.ccxt.client.is_transient``:
network errors, rate limits, 5xx, timeouts, but never an IP ban); authentication and other exchange errors are not.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import ccxt

from ingestion.ccxt.client import is_transient, point_api_at
from ingestion.prices.coingecko import EPOCH
from ingestion.prices.points import PricePoint
from ingestion.prices.retry import PriceSourceError, RetryPolicy, TransientSourceError, call_with_retries
from warehouse.numbers import D, NotADecimal

PAGE_LIMIT = 1000


def make_exchange(exchange_id: str, *, api_url: str | None = None, timeout: float = 20.0) -> ccxt.Exchange:
    """A public (key-less) ccxt client of ``exchange_id`` that returns numbers as strings."""
    if exchange_id not in ccxt.exchanges:
        raise PriceSourceError(f"unknown ccxt exchange id {exchange_id!r} (COINFRS_PRICE_EXCHANGE)")
    exchange = getattr(ccxt, exchange_id)({
        "enableRateLimit": True,
        "timeout": int(timeout * 1000),
        "options": {"fetchCurrencies": False, "fetchMargins": False, "fetchMarkets": {"types": ["spot"]}},
    })
    if not exchange.has.get("fetchOHLCV"):
        raise PriceSourceError(f"ccxt exchange {exchange_id!r} has no fetch_ohlcv (COINFRS_PRICE_EXCHANGE)")
    exchange.number = str
    point_api_at(exchange, api_url)
    return exchange


class ExchangeCandles:
    """Candle closes of ``BASE/QUOTE`` pairs on one exchange."""

    def __init__(self, exchange: ccxt.Exchange, *, quote: str = "USDT", retry: RetryPolicy = RetryPolicy()) -> None:
        self.exchange = exchange
        self.quote = quote.upper()
        self.retry = retry

    @property
    def exchange_id(self) -> str:
        return str(self.exchange.id)

    def _call(self, what: str, fn, *args, **kwargs):
        def attempt():
            try:
                return fn(*args, **kwargs)
            except ccxt.BaseError as exc:
                if is_transient(exc):  # RateLimitExceeded, ExchangeNotAvailable, RequestTimeout, ...
                    raise TransientSourceError(f"{self.exchange_id} {what}: {type(exc).__name__}") from None
                raise PriceSourceError(f"{self.exchange_id} {what}: {type(exc).__name__}: {str(exc)[:200]}") from None

        return call_with_retries(attempt, self.retry)

    def pair_for(self, base: str) -> str | None:
        """``BASE/QUOTE`` if the exchange lists it, else None."""
        self._call("load_markets", self.exchange.load_markets)
        symbol = f"{base.upper()}/{self.quote}"
        return symbol if symbol in self.exchange.markets else None

    def fetch_closes(self, symbol: str, start: datetime, end: datetime, timeframe: str = "1d") -> list[PricePoint]:
        """Closes of the candles that open in [start, end); each point is stamped at its candle's close."""
        step = timedelta(seconds=self.exchange.parse_timeframe(timeframe))
        since = _ms(start)
        stop = _ms(end)
        points: list[PricePoint] = []
        while since < stop:
            candles = self._call(f"fetch_ohlcv {symbol} {timeframe}", self.exchange.fetch_ohlcv, symbol, timeframe,
                                 since=since, limit=PAGE_LIMIT)
            if not candles:
                break
            for index, candle in enumerate(candles):
                opened = EPOCH + timedelta(milliseconds=int(candle[0]))
                if opened >= end:
                    break
                try:
                    price = D(candle[4])
                except NotADecimal:
                    raise PriceSourceError(f"{self.exchange_id} {symbol}: candle {index} close is not a number: "
                                           f"{candle[4]!r}") from None
                if price <= 0:
                    raise PriceSourceError(f"{self.exchange_id} {symbol}: candle {index} close must be positive")
                points.append(PricePoint(opened + step, price))
            last = int(candles[-1][0])
            if last + 1 <= since:
                break
            since = last + int(step.total_seconds() * 1000)
        return points


def _ms(moment: datetime) -> int:
    return int((moment.astimezone(timezone.utc) - EPOCH) // timedelta(milliseconds=1))
