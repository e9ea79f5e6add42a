"""One retry policy and one transient-error taxonomy for every connector (exchanges through ccxt, the custodian,
EVM and Solana RPC, explorer APIs, price sources).

The taxonomy:
- ``TransientError``: worth retrying after a backoff (connection failed or timed out, HTTP 429 or 5xx, a JSON-RPC
  error the node marks temporary, an exchange's "try again"); it may carry the ``retry_after`` seconds the source
  asked for. Each connector turns its client's failures into one of these or into a ``SourceError``; only the
  ``is_transient`` predicate it passes to ``retry_call`` differs (ccxt's classes, HTTP statuses, JSON-RPC codes).
- ``SourceError``: a source could not be read and retrying will not help as is; ``SourceUnavailable`` (it stayed
  down after every retry, or banned us) and ``SourceAccessError`` (credentials or permissions refused: a person has
  to act). The message says why and what to do, and never carries a secret.

The policy: ``RetryPolicy`` (attempts, first wait, longest wait, longest Retry-After honoured); waits grow
exponentially with jitter (a random point in the upper half of the backoff, so parallel workers spread out), and a
``Retry-After`` the source sent is waited for up to ``max_retry_after_seconds``. ``retry_call`` runs an action
under it (tenacity), calling ``before_sleep`` between attempts (resync a clock, fail over to the next URL).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

T = TypeVar("T")


class SourceError(RuntimeError):
    """A source could not be read; the message says why and what to do. Never carries a secret."""


class SourceUnavailable(SourceError):
    """The source stayed down (retries exhausted) or banned us (418): the day's data may be incomplete."""


class SourceAccessError(SourceError):
    """The source refused the credentials or their permissions: a person has to act."""


class TransientError(Exception):
    """A failure worth retrying after a backoff; ``retry_after``: the seconds the source asked to wait, if it did."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial_seconds: float = 0.5
    max_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0


def backoff_seconds(policy: RetryPolicy, attempt: int, retry_after: float | None = None) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): exponential with jitter, at least the source's
    ``Retry-After`` (capped by the policy)."""
    backoff = min(policy.max_seconds, policy.initial_seconds * 2 ** (attempt - 1))
    seconds = random.uniform(backoff / 2, backoff)
    if retry_after is not None:
        seconds = max(seconds, min(retry_after, policy.max_retry_after_seconds))
    return seconds


def _is_transient_error(error: BaseException) -> bool:
    return isinstance(error, TransientError)


def retry_call(action: Callable[[], T], policy: RetryPolicy, *,
               is_transient: Callable[[BaseException], bool] = _is_transient_error,
               retry_after: Callable[[BaseException], float | None] = lambda e: getattr(e, "retry_after", None),
               before_sleep: Callable[[BaseException, int], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """``action()``, retried under ``policy`` while it raises what ``is_transient`` accepts; the last error is
    re-raised as it is (the caller words the final ``SourceError``). ``before_sleep(error, attempt)`` runs before
    each wait."""

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return backoff_seconds(policy, state.attempt_number, retry_after(error) if error is not None else None)

    def between(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if before_sleep is not None and error is not None:
            before_sleep(error, state.attempt_number)

    retrying = Retrying(retry=retry_if_exception(is_transient), stop=stop_after_attempt(max(1, policy.attempts)),
                        wait=wait, before_sleep=between, sleep=sleep, reraise=True)
    return retrying(action)
