"""Rate limiting and retries shared by the price connectors.

Only transient failures are retried (HTTP 429 and 5xx, connection errors, timeouts), with exponential
backoff plus jitter (tenacity); a ``Retry-After`` header, when the source sends one, is honoured up to
the maximum wait. Anything else (401, 403, 404, a malformed answer) fails at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

T = TypeVar("T")


class PriceSourceError(RuntimeError):
    """A price source refused or could not answer; the message names the source and the request, never a secret."""


class TransientSourceError(PriceSourceError):
    """A failure worth retrying (rate limited, server error, network)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 60.0


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
    """Run ``action``; on ``TransientSourceError`` wait (exponential backoff + jitter) and try again."""
    backoff = tenacity.wait_exponential_jitter(initial=policy.initial_wait, max=policy.max_wait,
                                               jitter=policy.initial_wait)

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = getattr(error, "retry_after", None) or 0.0
        return min(max(backoff(state), hinted), policy.max_wait)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientSourceError),
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=wait,
        sleep=sleep,
        reraise=True,
    )
    return retrying(action)
