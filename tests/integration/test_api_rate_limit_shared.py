"""Rate limits shared across API workers through Redis (issue 18, item 8): a real 2-worker server (what
`coinfrs serve --workers 2` runs) against the real Redis at 127.0.0.1:6379 admits exactly the limit per key and
minute across both workers; without COINFRS_REDIS_URL each worker counts its own share; a Redis that does not answer
degrades to per-worker counting instead of refusing requests."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis

from api.security import RateLimiter, SharedRateLimiter, make_rate_limiter
from tests.integration.live_api import live_api
from tests.integration.test_api import Seed, seed  # noqa: F401 (fixture)

REDIS_URL = "redis://127.0.0.1:6379/0"
LIMIT = 10


@pytest.fixture(scope="module")
def redis_up() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError as exc:  # the real service is part of the test environment (docker-compose runs it)
        pytest.fail(f"Redis is not answering at {REDIS_URL}: {exc}")


def _away_from_a_minute_boundary() -> None:
    """The limit counts per clock minute: start a burst with at least 15 s left in the minute."""
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.5)


def _burst(base: str, key: str, requests: int) -> tuple[list[int], set[str]]:
    statuses, workers = [], set()
    for _ in range(requests):  # a new connection each time: the workers take turns accepting them
        resp = httpx.get(f"{base}/api/v1/entities", headers={"X-API-Key": key, "Connection": "close"})
        statuses.append(resp.status_code)
        workers.add(resp.headers.get("X-Request-ID", "")[:12])  # a random prefix per worker process
    return statuses, workers


def test_two_workers_share_one_count_per_key_through_redis(seed: Seed, database_url: str, redis_up) -> None:  # noqa: F811
    _away_from_a_minute_boundary()
    env = {"COINFRS_API_RATE_LIMIT_PER_MINUTE": str(LIMIT), "COINFRS_REDIS_URL": REDIS_URL}
    with live_api(database_url, workers=2, env=env) as base:
        statuses, workers = _burst(base, seed.key_a, 3 * LIMIT)
        other, _ = _burst(base, seed.key_b, 2)  # another key has its own count
    assert len(workers) == 2, "both workers answered"
    assert statuses.count(200) == LIMIT and statuses[:LIMIT] == [200] * LIMIT, statuses
    assert set(statuses[LIMIT:]) == {429}
    assert other == [200, 200]


def test_without_redis_each_worker_counts_its_own_share(seed: Seed, database_url: str) -> None:  # noqa: F811
    _away_from_a_minute_boundary()
    env = {"COINFRS_API_RATE_LIMIT_PER_MINUTE": str(LIMIT), "COINFRS_REDIS_URL": ""}
    with live_api(database_url, workers=2, env=env) as base:
        statuses, workers = _burst(base, seed.key_a, 3 * LIMIT)
    assert len(workers) == 2
    assert statuses.count(200) > LIMIT  # what the shared count fixes


def test_the_limiter_follows_the_setting_and_survives_a_silent_redis(caplog) -> None:
    assert isinstance(make_rate_limiter(5, None), RateLimiter)
    assert isinstance(make_rate_limiter(5, REDIS_URL), SharedRateLimiter)
    down = SharedRateLimiter(2, "redis://127.0.0.1:1/0", timeout=0.2)  # nothing listens on port 1

    async def three() -> list[int | None]:
        return [await down.ahit("k") for _ in range(3)]

    waits = asyncio.run(three())
    assert waits[:2] == [None, None] and waits[2] is not None and 1 <= waits[2] <= 60  # counted in-process
    assert sum("Redis did not answer" in r.getMessage() for r in caplog.records) == 1  # once a minute, not per request
