"""CoinGecko's REST API over ``requests``: historical prices of a coin in a currency.

``/api/v3/coins/{id}/market_chart/range`` returns ``{"prices": [[ms, price], ...], ...}``; CoinGecko picks
the granularity from the span (5-minutely up to a day, hourly up to 90 days, daily at 00:00 UTC beyond).
Numbers are parsed from the JSON text as exact decimals. The optional API key travels in a header
(``x-cg-demo-api-key`` or ``x-cg-pro-api-key``) and never appears in a log or an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import quote

import requests

from ingestion.prices.points import PricePoint
from ingestion.prices.retry import PriceSourceError, RateLimiter, RetryPolicy, TransientSourceError, call_with_retries
from warehouse.numbers import D, NotADecimal

API_PREFIX = "/api/v3"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


class CoinGeckoClient:
    """A typed CoinGecko client: explicit timeout, rate limit, retries on transient errors only."""

    def __init__(self, base_url: str, *, api_key: str | None = None, api_key_header: str = "x-cg-demo-api-key",
                 timeout: float = 20.0, min_interval: float = 2.5, retry: RetryPolicy = RetryPolicy(),
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith(API_PREFIX):
            self.base_url = self.base_url[: -len(API_PREFIX)]
        self._api_key = api_key or None
        self._headers = {"Accept": "application/json"}
        if self._api_key:
            self._headers[api_key_header] = self._api_key
        self.timeout = timeout
        self.retry = retry
        self.limiter = RateLimiter(min_interval)
        self.session = session or requests.Session()
        self.requests_made = 0

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _get(self, path: str, params: Mapping[str, str | int]) -> object:
        url = f"{self.base_url}{API_PREFIX}{path}"

        def attempt() -> object:
            self.limiter.wait()
            self.requests_made += 1
            try:
                response = self.session.get(url, params=dict(params), headers=self._headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientSourceError(self._redact(f"coingecko {path}: {type(exc).__name__}")) from None
            status = response.status_code
            if status == 429 or status >= 500:
                raise TransientSourceError(f"coingecko {path}: HTTP {status}", retry_after=_retry_after(response))
            if status >= 400:
                hint = " (check COINFRS_COINGECKO_API_KEY and its header)" if status in (401, 403) else ""
                raise PriceSourceError(self._redact(f"coingecko {path}: HTTP {status}{hint}: {response.text[:200]}"))
            try:
                return json.loads(response.text, parse_float=D)
            except ValueError:
                raise PriceSourceError(f"coingecko {path}: the answer is not JSON") from None

        return call_with_retries(attempt, self.retry)

    def fetch_market_chart_range(self, coin_id: str, vs_currency: str, start: datetime, end: datetime) -> list[PricePoint]:
        """Prices of ``coin_id`` in ``vs_currency`` between two instants, oldest first."""
        path = f"/coins/{quote(coin_id, safe='')}/market_chart/range"
        payload = self._get(path, {"vs_currency": vs_currency.lower(), "from": int(start.timestamp()),
                                   "to": int(end.timestamp())})
        return map_market_chart(payload, f"coingecko {path}")


def map_market_chart(payload: object, where: str) -> list[PricePoint]:
    """``{"prices": [[ms, price], ...]}`` -> price points; a malformed entry is an error naming it."""
    if not isinstance(payload, dict) or not isinstance(payload.get("prices"), list):
        raise PriceSourceError(f"{where}: the answer has no 'prices' list")
    points: list[PricePoint] = []
    for index, entry in enumerate(payload["prices"]):
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], (int, Decimal)):
            raise PriceSourceError(f"{where}: prices[{index}] is not [timestamp_ms, price]: {entry!r}")
        if entry[1] is None:
            continue  # CoinGecko leaves gaps as null
        try:
            price = D(entry[1]) if isinstance(entry[1], (int, Decimal)) else D(str(entry[1]))
        except NotADecimal:
            raise PriceSourceError(f"{where}: prices[{index}] price is not a number: {entry[1]!r}") from None
        if price <= 0:
            raise PriceSourceError(f"{where}: prices[{index}] price must be positive, got {price}")
        ts = EPOCH + timedelta(milliseconds=int(entry[0]))
        points.append(PricePoint(ts, price))
    points.sort(key=lambda p: p.ts)
    return points
