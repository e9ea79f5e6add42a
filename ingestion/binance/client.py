"""Talking to Binance: the real ccxt client (exact strings, rate limiter on, hosts replaceable), the read-only key
check, and the settings of a configured Binance source (``source_credentials.config``).

Every call goes through ``ingestion.ccxt.client.call_exchange`` (the shared retry policy and ccxt's transient-error
classes); ``ingestion/binance/sync.py`` stages what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ccxt

from ingestion.ccxt.client import RetryPolicy, SourceAccessError, call_exchange, point_api_at
from ingestion.connectors import read_json_credentials, retry_policy, since_of, until_of

DAY_MS = 86_400_000
# Binance's names of the permissions a read-only key must not have
FORBIDDEN_PERMISSIONS = {
    "enableWithdrawals": "Enable Withdrawals",
    "enableInternalTransfer": "Enable Internal Transfer",
    "permitsUniversalTransfer": "Permits Universal Transfer",
    "enableSpotAndMarginTrading": "Enable Spot & Margin Trading",
    "enableMargin": "Enable Margin Loan, Repay & Transfer",
    "enableFutures": "Enable Futures",
    "enableVanillaOptions": "Enable European Options",
    "enablePortfolioMarginTrading": "Enable Portfolio Margin Trading",
    "enableFixApiTrade": "Enable FIX API Trading",
}


@dataclass(frozen=True)
class ApiCredentials:
    api_key: str
    secret: str = field(repr=False)

    def __repr__(self) -> str:  # never print the secret, not even by accident
        return f"ApiCredentials(api_key={self.api_key[:4]}…)"


@dataclass(frozen=True)
class BinanceOptions:
    """Where and how to call Binance. ``api_url`` replaces the hosts (tests, proxies); paths are kept."""

    api_url: str | None = None
    since: datetime = datetime(2020, 1, 1, tzinfo=timezone.utc)
    until: datetime | None = None  # read history up to this instant; None: now (a bounded backfill, the demo)
    rate_limit_ms: float | None = None  # None: ccxt's own (50 ms per weight unit)
    timeout_ms: int = 10_000
    retry: RetryPolicy = RetryPolicy()
    page_size: int = 1000
    # isolated margin pairs to read besides those Binance lists now and those read before: pairs closed or disabled
    # before the first sync (Binance's listing may no longer name them, and every per-pair endpoint needs the pair)
    isolated_pairs: tuple[str, ...] = ()
    overlap_ms: dict[str, int] = field(default_factory=lambda: {
        "deposits": 3 * DAY_MS, "withdrawals": 3 * DAY_MS, "transfers": DAY_MS, "futures_income": DAY_MS,
        "snapshots": DAY_MS, "converts": DAY_MS, "dust": DAY_MS, "margin_interest": DAY_MS, "margin_loans": DAY_MS,
        "sub_transfers": DAY_MS, "earn": 3 * DAY_MS, "dividends": DAY_MS, "fiat": 3 * DAY_MS,
        "coin_futures_income": DAY_MS})


def make_client(credentials: ApiCredentials, options: BinanceOptions) -> ccxt.binance:
    """The real ccxt.binance, rate limiter on; every API base rewritten to ``options.api_url`` if set."""
    exchange = ccxt.binance({
        "apiKey": credentials.api_key, "secret": credentials.secret, "enableRateLimit": True,
        "timeout": options.timeout_ms,
        "options": {"fetchCurrencies": False, "fetchMargins": False, "fetchMarkets": {"types": ["spot", "linear"]},
                    "adjustForTimeDifference": False, "recvWindow": 10_000},
    })
    if options.rate_limit_ms is not None:
        exchange.rateLimit = options.rate_limit_ms
    return point_api_at(exchange, options.api_url)


# ------------------------------------------------------------------------------ permissions


def check_read_only(exchange: ccxt.binance, policy: RetryPolicy = RetryPolicy()) -> dict[str, Any]:
    """The key's restrictions (GET /sapi/v1/account/apiRestrictions); refuses a key that can move or trade."""
    restrictions = call_exchange(exchange, "GET /sapi/v1/account/apiRestrictions",
                                 exchange.sapiGetAccountApiRestrictions, policy=policy)
    enabled = [label for flag, label in FORBIDDEN_PERMISSIONS.items() if restrictions.get(flag) is True]
    if enabled:
        raise SourceAccessError(
            "refusing this Binance API key: it is not read-only. Remove these permissions in Binance's API "
            f"management and try again: {', '.join(enabled)}")
    if restrictions.get("enableReading") is not True:
        raise SourceAccessError("this Binance API key cannot read (Enable Reading is off): turn it on")
    return restrictions


# ------------------------------------------------------------------------------ a configured source


def binance_options(config: dict[str, Any]) -> BinanceOptions:
    """The options of a configured Binance source (ingestion/sources.py ``CONFIG_KEYS``)."""
    return BinanceOptions(api_url=config.get("api_url"), rate_limit_ms=config.get("rate_limit_ms"),
                          timeout_ms=int(config.get("timeout_ms", 10_000)), retry=retry_policy(config),
                          since=since_of(config), until=until_of(config),
                          isolated_pairs=tuple(sorted({p.strip().upper() for p in str(config.get("isolated_pairs", "")).split(",")
                                                       if p.strip()})))


def client_of(credentials: dict[str, str], config: dict[str, Any]) -> tuple[ccxt.binance, BinanceOptions]:
    options = binance_options(config)
    return make_client(ApiCredentials(credentials["api_key"], credentials["api_secret"]), options), options


def read_credentials(path: Path | None) -> dict[str, str]:
    """API key and secret from a JSON file ``{"api_key": ..., "api_secret": ...}``, else from the environment
    (``COINFRS_BINANCE_API_KEY`` / ``COINFRS_BINANCE_API_SECRET``). Never from the command line."""
    return read_json_credentials("binance", path, {"api_key": ("api_key",), "api_secret": ("api_secret", "secret")})


def check(credentials: dict[str, str], config: dict[str, Any]) -> dict[str, Any]:
    exchange, options = client_of(credentials, config)
    return check_read_only(exchange, options.retry)


def inspect(credentials: dict[str, str], config: dict[str, Any]):
    """The key's restrictions, how many markets, and the spot and USD-M futures balances now."""
    exchange, options = client_of(credentials, config)
    restrictions = check_read_only(exchange, options.retry)
    markets = call_exchange(exchange, "load_markets", exchange.load_markets, policy=options.retry)
    spot = call_exchange(exchange, "GET /api/v3/account", exchange.privateGetAccount, {"omitZeroBalances": "true"},
                         policy=options.retry)
    futures = call_exchange(exchange, "GET /fapi/v2/balance", exchange.fapiPrivateV2GetBalance, {}, policy=options.retry)
    balances = {"spot": {b["asset"]: b["free"] for b in spot.get("balances", [])},
                "futures": {b["asset"]: b["balance"] for b in futures}}
    return restrictions, len(markets), balances, None
