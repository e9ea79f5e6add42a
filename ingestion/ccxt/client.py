"""Talking to an exchange through ccxt: the client (exact strings, rate limiter on, hosts replaceable), the read-only
key check, and every call made without making things worse: retry what is transient, stop on the rest. Binance's
connector (ingestion/binance/client.py) calls through ``call_exchange`` too, and so do the exchange candles of the
price service (ingestion/prices/exchange.py, through ``is_transient``).

- Retried (exponential backoff with jitter, tenacity): ccxt ``NetworkError`` and its subclasses — timeouts,
  5xx (``ExchangeNotAvailable``; Binance's -1001 body on a 5xx is ccxt's bare ``OperationFailed``, the parent
  class ccxt reserves for retryable failures, so that exact class is retried too), 429 (``RateLimitExceeded``/``DDoSProtection``, honouring ``Retry-After``)
  and -1021 (``InvalidNonce``: the clock is resynchronised with the exchange's before the next attempt).
- Stopped at once: HTTP 418 (the IP is banned; retrying extends the ban), authentication and permission
  errors, and every other ``ExchangeError`` (a bad request will not get better).
ccxt's own rate limiter (``enableRateLimit``) stays on; this layer only decides what happens after a failure.
The policy, the backoff and the error classes are the shared ones (ingestion/retry.py); only ccxt's classification
is here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt

from ingestion.connectors import retry_policy, since_of
from ingestion.retry import RetryPolicy, SourceAccessError, SourceError, SourceUnavailable, retry_call

__all__ = ["RetryPolicy", "SourceAccessError", "SourceError", "SourceUnavailable", "call_exchange", "is_ip_ban",
           "is_transient", "point_api_at"]

T = TypeVar("T")
DAY_MS = 86_400_000
DEDICATED = {"binance": "binance"}  # exchanges with their own connector: use that kind instead


def is_ip_ban(error: BaseException) -> bool:
    """ccxt reports Binance's 418 as DDoSProtection('binance 418 ...'), like a 429: tell them apart."""
    return isinstance(error, ccxt.DDoSProtection) and " 418 " in f" {error} "


def is_transient(error: BaseException) -> bool:
    """NetworkError and its subclasses (not a 418), and ccxt's bare OperationFailed: the class ccxt gives
    Binance's -1001 "Internal error; unable to process your request. Please try again." (a 5xx with a body)."""
    if type(error) is ccxt.OperationFailed:
        return True
    return isinstance(error, ccxt.NetworkError) and not is_ip_ban(error)


def _retry_after(exchange: ccxt.Exchange) -> float | None:
    headers = getattr(exchange, "last_response_headers", None) or {}
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def call_exchange(exchange: ccxt.Exchange, what: str, fn: Callable[..., T], *args: Any,
                  policy: RetryPolicy = RetryPolicy(), **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` with the retry rules above; ``what`` names the call in error messages."""

    def retry_after(error: BaseException) -> float | None:
        return _retry_after(exchange) if isinstance(error, ccxt.DDoSProtection) else None

    def before_sleep(error: BaseException, attempt: int) -> None:
        if isinstance(error, ccxt.InvalidNonce):  # -1021: our clock and the exchange's disagree
            try:
                exchange.load_time_difference()
                exchange.options["adjustForTimeDifference"] = True
            except ccxt.NetworkError:
                pass  # the next attempt fails the same way and resyncs again

    try:
        return retry_call(lambda: fn(*args, **kwargs), policy, is_transient=is_transient, retry_after=retry_after,
                          before_sleep=before_sleep)
    except ccxt.BaseError as error:
        raise _classify(exchange, what, error, policy) from None


def _classify(exchange: ccxt.Exchange, what: str, error: ccxt.BaseError, policy: RetryPolicy) -> SourceError:
    name = exchange.id
    detail = _short(error)
    if is_ip_ban(error):
        return SourceUnavailable(f"{name} banned this IP (HTTP 418) during {what}: stopped without retrying; "
                                 f"wait for the ban to expire before the next run ({detail})")
    if isinstance(error, ccxt.AuthenticationError):
        return SourceAccessError(f"{name} refused the API key during {what} ({type(error).__name__}): check the key, "
                                 f"its IP whitelist and its permissions ({detail})")
    if is_transient(error):
        return SourceUnavailable(f"{name} did not answer {what} after {policy.attempts} attempts "
                                 f"({type(error).__name__}: {detail})")
    return SourceError(f"{name} rejected {what} ({type(error).__name__}: {detail})")


def _short(error: BaseException, limit: int = 300) -> str:
    text = re.sub(r"(signature|apiKey|secret)=[^&\s]+", r"\1=***", " ".join(str(error).split()))
    return text if len(text) <= limit else text[:limit] + "..."


# ------------------------------------------------------------------------------ hosts
# Point a ccxt client at another host: every entry of ``exchange.urls['api']`` keeps its path, its host is replaced.
# Used for a mirror or proxy of an exchange's API, and by the tests and the demo to reach a local server that speaks
# the exchange's protocol (``api_url`` / ``COINFRS_PRICE_EXCHANGE_URL``).
def rewrite_urls(urls: object, base: str) -> object:
    """``urls`` (a URL or a nested dict of them) with each host replaced by ``base``, each path kept."""
    if isinstance(urls, str):
        return base.rstrip("/") + urlsplit(urls).path
    if isinstance(urls, dict):
        return {key: rewrite_urls(value, base) for key, value in urls.items()}
    return urls


def point_api_at(exchange: Any, base: str | None) -> Any:
    """Send every API call of the ccxt ``exchange`` to ``base`` (nothing changes when ``base`` is empty)."""
    if base:
        exchange.urls["api"] = rewrite_urls(exchange.urls["api"], base)
    return exchange


# ------------------------------------------------------------------------------ the generic client


# ccxt options per exchange: only the markets the streams need, and the endpoint that reaches back far enough
CLIENT_OPTIONS: dict[str, dict[str, Any]] = {
    "okx": {"fetchMarkets": {"types": ["spot"]}, "fetchLedger": {"method": "privateGetAccountBillsArchive"}},
}


@dataclass(frozen=True)
class CcxtOptions:
    api_url: str | None = None
    since: datetime = datetime(2020, 1, 1, tzinfo=timezone.utc)
    rate_limit_ms: float | None = None
    timeout_ms: int = 10_000
    retry: RetryPolicy = RetryPolicy()
    window_days: int = 30
    overlap_ms: int = DAY_MS


def ccxt_options(config: dict[str, Any]) -> CcxtOptions:
    return CcxtOptions(api_url=config.get("api_url"), since=since_of(config), rate_limit_ms=config.get("rate_limit_ms"),
                       timeout_ms=int(config.get("timeout_ms", 10_000)), retry=retry_policy(config))


def exchange_id_of(kind: str) -> str:
    """``kraken`` or ``ccxt.kraken`` -> ``kraken``; refuses ids ccxt does not know and exchanges with a dedicated connector."""
    exchange_id = kind.removeprefix("ccxt.").strip().lower()
    if exchange_id in DEDICATED:
        raise ValueError(f"{exchange_id} has its own connector: use the source kind {DEDICATED[exchange_id]!r}")
    if exchange_id not in ccxt.exchanges:
        raise ValueError(f"ccxt has no exchange {exchange_id!r} (see ccxt.exchanges)")
    return exchange_id


def make_client(exchange_id: str, api_key: str, secret: str, options: CcxtOptions,
                password: str | None = None) -> ccxt.Exchange:
    """The real ccxt client of ``exchange_id``, rate limiter on, numbers as exact strings; hosts replaced by ``api_url``.
    ``password``: the key's passphrase, for exchanges that require one (OKX)."""
    config: dict[str, Any] = {"apiKey": api_key, "secret": secret, "enableRateLimit": True, "timeout": options.timeout_ms,
                              "options": dict(CLIENT_OPTIONS.get(exchange_id, {}))}
    if password:
        config["password"] = password
    exchange = getattr(ccxt, exchange_id)(config)
    exchange.number = str
    if options.rate_limit_ms is not None:
        exchange.rateLimit = options.rate_limit_ms
    return point_api_at(exchange, options.api_url)


# ------------------------------------------------------------------------------ read-only keys


def _kraken_probes(exchange: ccxt.Exchange, policy: RetryPolicy) -> dict[str, bool]:
    probes = {"Create & Modify Orders": lambda: exchange.privatePostAddOrder(
                  {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "1", "volume": "0.0001",
                   "validate": "true"}),
              "Withdraw Funds": lambda: exchange.privatePostWithdrawInfo({"asset": "XBT", "key": "coinfrs-probe",
                                                                          "amount": "0.0001"})}
    enabled: dict[str, bool] = {}
    for permission, probe in probes.items():
        try:
            call_exchange(exchange, f"probe {permission}", probe, policy=policy)
            enabled[permission] = True
        except SourceAccessError as error:
            if "PermissionDenied" not in str(error):
                raise
            enabled[permission] = False
        except SourceError:
            enabled[permission] = True  # the call got past the permission check: the key has it
    return enabled


def _okx_probes(exchange: ccxt.Exchange, policy: RetryPolicy) -> dict[str, bool]:
    """OKX says what a key may do: ``GET /api/v5/account/config`` -> ``perm`` (read_only, trade, withdraw)."""
    config = call_exchange(exchange, "account config", exchange.privateGetAccountConfig, policy=policy)
    perm = {p.strip() for p in str(((config.get("data") or [{}])[0]).get("perm", "")).split(",")}
    return {"Trade": "trade" in perm, "Withdraw": "withdraw" in perm}


PROBES: dict[str, Callable[[ccxt.Exchange, RetryPolicy], dict[str, bool]]] = {"kraken": _kraken_probes,
                                                                              "okx": _okx_probes}


def check_read_only(exchange: ccxt.Exchange, policy: RetryPolicy) -> dict[str, Any]:
    """The key's permissions as far as the exchange lets us see them; a key that can trade or withdraw is refused."""
    call_exchange(exchange, "fetch_balance", exchange.fetch_balance, policy=policy)  # the key reads at all
    probe = PROBES.get(exchange.id)
    if probe is None:
        return {"enableReading": True, "permissions_checked": False}
    enabled = probe(exchange, policy)
    granted = [name for name, on in enabled.items() if on]
    if granted:
        raise SourceAccessError(f"refusing this {exchange.id} API key: it is not read-only. Remove these permissions "
                                f"in {exchange.id}'s API key settings and try again: {', '.join(granted)}")
    return {"enableReading": True, "permissions_checked": True, **{name: False for name in enabled}}
