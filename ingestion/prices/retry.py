"""Rate limiting and retries of the price connectors, on the shared policy and taxonomy (ingestion/retry.py).

The client-side pacing (``RateLimiter``) is the shared one too. Only transient failures are retried (HTTP 429 and 5xx, connection errors, timeouts: ``TransientSourceError``, a
``TransientError``), with the shared exponential backoff plus jitter; a ``Retry-After`` header, when the source sends
one, is honoured up to the policy's ``max_retry_after_seconds``. Anything else (401, 403, 404, a malformed answer)
fails at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ingestion.retry import RateLimiter, RetryPolicy, SourceError, TransientError, retry_call

__all__ = ["PriceSourceError", "RateLimiter", "RetryPolicy", "TransientSourceError", "call_with_retries"]

T = TypeVar("T")


class PriceSourceError(SourceError):
    """A price source refused or could not answer; the message names the source and the request, never a secret."""


class TransientSourceError(PriceSourceError, TransientError):
    """A failure worth retrying (rate limited, server error, network)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        TransientError.__init__(self, message, retry_after)


def call_with_retries(action: Callable[[], T], policy: RetryPolicy, *,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``action``; on ``TransientSourceError`` wait (the shared backoff) and try again."""
    return retry_call(action, policy, sleep=sleep)
