"""One retry policy and one transient-error taxonomy for every connector (exchanges through ccxt, the custodian,
EVM and Solana RPC, explorer APIs, price sources).

The taxonomy:
- ``TransientError``: worth retrying after a backoff (connection failed or timed out, HTTP 429 or 5xx, a JSON-RPC
  error the node marks temporary, an exchange's "try again"); it may carry the ``retry_after`` seconds the source
  asked for. Each connector turns its client's failures into one of these or into a ``SourceError``; only the
  ``is_transient`` predicate it passes to ``retry_call`` differs (ccxt's classes, HTTP statuses, JSON-RPC codes).
- ``SourceError``: a source could not be read and retrying will not help as is; ``SourceUnavailable`` (it stayed
  down after every retry, or banned us) and ``SourceAccessError`` (credentials or permissions refused: a person has
  to act). The message says why and what to do, and never carries a secret. Each client's own terminal error is one
  (``RpcError``, ``ExplorerError``, ``EsploraError``, ``SolanaSyncError``, ``BitcoinSyncError``,
  ``PriceSourceError``), so a caller catches ``SourceError`` whatever the source.

The policy: ``RetryPolicy`` (attempts, first wait, longest wait, longest Retry-After honoured); waits grow
exponentially with jitter (a random point in the upper half of the backoff, so parallel workers spread out), and a
``Retry-After`` the source sent is waited for up to ``max_retry_after_seconds``. ``retry_call`` runs an action
under it (tenacity), calling ``before_sleep`` between attempts (resync a clock, fail over to the next URL).
``RateLimiter`` spaces a client's own requests (a source's requests-per-second limit), before any failure.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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


# ------------------------------------------------------------------------------ circuit breaker (per source)
# One breaker per configured source, over whole syncs (each call inside a sync already retries under RetryPolicy):
# ``closed`` syncs run; ``failure_threshold`` consecutive failed syncs open it; while ``open`` syncs are skipped
# (the source is not called at all) until ``cool_down_seconds`` have passed since it opened; then one sync probes
# (``half_open``): success closes it, failure opens it again for another cool-down. The state lives in the database
# (ingestion/breakers.py) so every process sees it; these functions are the pure rules.

BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 3
    cool_down_seconds: float = 900.0

    @classmethod
    def from_env(cls) -> "BreakerPolicy":
        """``COINFRS_BREAKER_FAILURES`` and ``COINFRS_BREAKER_COOLDOWN_SECONDS``, else the defaults."""
        import os

        failures = os.environ.get("COINFRS_BREAKER_FAILURES")
        cool_down = os.environ.get("COINFRS_BREAKER_COOLDOWN_SECONDS")
        try:
            policy = cls(int(failures) if failures else cls.failure_threshold,
                         float(cool_down) if cool_down else cls.cool_down_seconds)
        except ValueError:
            raise ValueError("COINFRS_BREAKER_FAILURES must be an integer and COINFRS_BREAKER_COOLDOWN_SECONDS a "
                             f"number of seconds (got {failures!r}, {cool_down!r})") from None
        if policy.failure_threshold < 1 or policy.cool_down_seconds < 0:
            raise ValueError("COINFRS_BREAKER_FAILURES must be at least 1 and COINFRS_BREAKER_COOLDOWN_SECONDS >= 0")
        return policy


@dataclass(frozen=True)
class BreakerState:
    state: str = "closed"  # one of BREAKER_STATES
    consecutive_failures: int = 0
    opened_at: datetime | None = None
    probe_started_at: datetime | None = None
    last_error: str | None = None


def breaker_admits(state: BreakerState, now: datetime, policy: BreakerPolicy) -> str:
    """What a sync may do now: ``run`` (closed), ``probe`` (open or a stuck half-open past its cool-down: this sync
    is the one probe) or ``skip`` (open and cooling down, or another process is probing)."""
    from datetime import timedelta

    cool_down = timedelta(seconds=policy.cool_down_seconds)
    if state.state == "closed":
        return "run"
    since = state.probe_started_at if state.state == "half_open" else state.opened_at
    if since is None or now - since >= cool_down:
        return "probe"
    return "skip"


def breaker_after(state: BreakerState, succeeded: bool, now: datetime, policy: BreakerPolicy,
                  error: str | None = None) -> BreakerState:
    """The state after a sync that ran (or probed): success closes; a failed probe, or the threshold-th consecutive
    failure, opens it (again) from ``now``."""
    if succeeded:
        return BreakerState()
    failures = state.consecutive_failures + 1
    if state.state == "half_open" or failures >= policy.failure_threshold:
        return BreakerState("open", failures, now, None, error)
    return BreakerState("closed", failures, None, None, error)
