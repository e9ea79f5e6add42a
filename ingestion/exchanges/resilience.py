"""Calling an exchange through ccxt without making things worse: retry what is transient, stop on the rest.

- Retried (exponential backoff with jitter, tenacity): ccxt ``NetworkError`` and its subclasses — timeouts,
  5xx (``ExchangeNotAvailable``; Binance's -1001 body on a 5xx is ccxt's bare ``OperationFailed``, the parent
  class ccxt reserves for retryable failures, so that exact class is retried too), 429 (``RateLimitExceeded``/``DDoSProtection``, honouring ``Retry-After``)
  and -1021 (``InvalidNonce``: the clock is resynchronised with the exchange's before the next attempt).
- Stopped at once: HTTP 418 (the IP is banned; retrying extends the ban), authentication and permission
  errors, and every other ``ExchangeError`` (a bad request will not get better).
ccxt's own rate limiter (``enableRateLimit``) stays on; this layer only decides what happens after a failure.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ccxt
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

T = TypeVar("T")


class SourceError(RuntimeError):
    """A source could not be read; the message says why and what to do. Never carries a secret."""


class SourceUnavailable(SourceError):
    """The source stayed down (retries exhausted) or banned us (418): the day's data may be incomplete."""


class SourceAccessError(SourceError):
    """The exchange refused the credentials or their permissions: a person has to act."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial_seconds: float = 0.5
    max_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0


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

    def wait(state: RetryCallState) -> float:
        backoff = min(policy.max_seconds, policy.initial_seconds * 2 ** (state.attempt_number - 1))
        seconds = random.uniform(backoff / 2, backoff)  # jitter: spread the retries of parallel workers
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ccxt.DDoSProtection):
            retry_after = _retry_after(exchange)
            if retry_after is not None:
                seconds = max(seconds, min(retry_after, policy.max_retry_after_seconds))
        return seconds

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ccxt.InvalidNonce):  # -1021: our clock and the exchange's disagree
            try:
                exchange.load_time_difference()
                exchange.options["adjustForTimeDifference"] = True
            except ccxt.NetworkError:
                pass  # the next attempt fails the same way and resyncs again

    retrying = Retrying(retry=retry_if_exception(is_transient), stop=stop_after_attempt(policy.attempts), wait=wait,
                        before_sleep=before_sleep, reraise=True)
    try:
        return retrying(fn, *args, **kwargs)
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
