"""Rate limiting and retries of the price connectors, on the shared policy and taxonomy (ingestion/retry.py).

Only transient failures are retried (HTTP 429 and 5xx, connection errors, timeouts: ``TransientSourceError``, a
``TransientError``), with the shared exponential backoff plus jitter; a ``Retry-After`` header, when the source sends
one, is honoured up to the policy's ``max_retry_after_seconds``. Anything else (401, 403, 404, a malformed answer)
fails at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ingestion.retry import RetryPolicy, TransientError, retry_call

__all__ = ["PriceSourceError", "RateLimiter", "RetryPolicy", "TransientSourceError", "call_with_retries"]

T = TypeVar("T")


class PriceSourceError(RuntimeError):
    """A price source refused or could not answer; the message names the source and the request, never a secret."""


class TransientSourceError(PriceSourceError, TransientError):
    """A failure worth retrying (rate limited, server error, network)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        TransientError.__init__(self, message, retry_after)


class RateLimiter:
    """At least ``min_interval`` seconds between two calls (across threads)."""

    def __init__(self, min_interval: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.min_interval = min_interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last: float | None = None

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            if self._last is not None:
                delay = self._last + self.min_interval - now
                if delay > 0:
                    self._sleep(delay)
                    now = self._clock()
            self._last = now


def call_with_retries(action: Callable[[], T], policy: RetryPolicy, *,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``action``; on ``TransientSourceError`` wait (the shared backoff) and try again."""
    return retry_call(action, policy, sleep=sleep)
