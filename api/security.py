"""API keys: created once, stored as a hash, bound to one or more entities, with a scope (read | admin).

A key reads ``cf_<prefix>_<secret>``: ``prefix`` is 8 lowercase hex characters (stored in clear to
identify the key, never secret), ``secret`` 43 url-safe base64 characters (256 random bits from
``secrets``). The table ``api_keys`` keeps only the prefix and ``key_hash`` = SHA-256 (hex) of the
whole key; the full key is shown once, by ``create_api_key``, and never logged or echoed.

Also the rate limiter per key: a fixed one-minute window, in-process (``RateLimiter``), or shared by every worker
through Redis when ``COINFRS_REDIS_URL`` is set (``SharedRateLimiter``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sqlalchemy.dialects.postgresql import aggregate_order_by

from warehouse.entities import Entity
from warehouse.schema import api_key_entities, api_keys, entities

logger = logging.getLogger("coinfrs.api")

KEY_PATTERN = re.compile(r"^cf_(?P<prefix>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"cf_00000000_not-a-key").hexdigest()


SCOPES: tuple[str, ...] = ("read", "admin")
"""``read``: every data route of the key's entities. ``admin``: also the operator routes (``/api-keys``)."""


@dataclass(frozen=True)
class ApiKeyInfo:
    """What a verified key may see: its entities (one or more) and its scope."""

    id: int
    prefix: str
    entity_ids: tuple[int, ...]
    scope: str
    label: str | None
    created_at: datetime
    entities: tuple[Entity, ...] = ()
    """The entities themselves (read with the key, in the same query)."""

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    def entity(self, ref: str | int) -> Entity | None:
        """One of the key's entities by name (in any case, as everywhere: names are unique case-insensitively), or by
        id when ``ref`` is a number that is no name; else None."""
        text = str(ref).strip()
        for found in self.entities:
            if found.name.lower() == text.lower():
                return found
        if text.isdigit():
            for found in self.entities:
                if found.id == int(text):
                    return found
        return None


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored key as listed to an operator: never the secret, never the hash."""

    id: int
    prefix: str
    scope: str
    entity_ids: tuple[int, ...]
    entities: tuple[str, ...]
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_key(key: str | None) -> str | None:
    """The key's prefix if ``key`` has the shape of one of our keys, else None."""
    if not key or len(key) != 55:
        return None
    match = KEY_PATTERN.match(key)
    return match.group("prefix") if match else None


def create_api_key(conn: Connection, entity_ids: int | Sequence[int], label: str | None = None,
                   scope: str = "read") -> str:
    """Create a key bound to ``entity_ids`` (one id or several) with ``scope`` (read | admin).

    Returns the full key, the only time it is ever available: only its prefix and hash are stored.
    """
    ids = [entity_ids] if isinstance(entity_ids, int) else list(dict.fromkeys(entity_ids))
    if not ids:
        raise ValueError("a key needs at least one entity")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")
    known = set(conn.execute(sa.select(entities.c.id).where(entities.c.id.in_(ids))).scalars())
    missing = [i for i in ids if i not in known]
    if missing:
        raise LookupError(f"no entity numbered {missing[0]}")
    for _ in range(5):
        prefix = secrets.token_hex(4)
        key = f"cf_{prefix}_{secrets.token_urlsafe(32)}"
        taken = conn.execute(sa.select(api_keys.c.id).where(api_keys.c.prefix == prefix)).scalar()
        if taken is None:
            break
    else:  # pragma: no cover - 5 collisions in a 2**32 space
        raise RuntimeError("could not draw an unused key prefix")
    assert parse_key(key) == prefix
    key_id = conn.execute(sa.insert(api_keys).values(prefix=prefix, key_hash=hash_key(key), label=label, scope=scope)
                          .returning(api_keys.c.id)).scalar_one()
    conn.execute(sa.insert(api_key_entities), [{"api_key_id": key_id, "entity_id": i} for i in ids])
    return key


_KEY_WITH_ENTITIES = sa.text("""
    SELECT k.id, k.prefix, k.scope, k.label, k.created_at, k.key_hash, k.revoked_at,
           (SELECT json_agg(json_build_object('id', e.id, 'name', e.name, 'timezone', e.timezone,
                                              'reporting_currency', e.reporting_currency,
                                              'holding_rule', e.holding_rule) ORDER BY e.id)
            FROM api_key_entities ke JOIN entities e ON e.id = ke.entity_id
            WHERE ke.api_key_id = k.id) AS entities,
           coinfrs_data_version() AS snapshot
    FROM (SELECT 1) one LEFT JOIN api_keys k ON k.prefix = :prefix""")
"""The key, its scope and its entities, and the database snapshot the request starts from (SQL text: run on every
request, so there is no statement to build and cache-key; one row even for an unknown prefix)."""


def verify_api_key_at_snapshot(conn: Connection, key: str | None) -> tuple[ApiKeyInfo | None, str | None]:
    """``verify_api_key``, and the warehouse's data version (``coinfrs_data_version()``, ``api.snapshots``) read in
    the same statement: what
    the response cache (``api.cache``) checks its answers against. (None, None) for a key of the wrong shape."""
    prefix = parse_key(key)
    if prefix is None:
        return None, None
    row = conn.execute(_KEY_WITH_ENTITIES, {"prefix": prefix}).one()  # one round trip
    presented = hash_key(key)  # type: ignore[arg-type]
    stored = row.key_hash if row.key_hash is not None else _DUMMY_HASH
    matches = hmac.compare_digest(presented.encode(), stored.encode())
    if row.id is None or not matches or row.revoked_at is not None:
        return None, row.snapshot
    bound = tuple(Entity(id=x["id"], name=x["name"], timezone=x["timezone"],
                         reporting_currency=x["reporting_currency"] or "USD", holding_rule=x.get("holding_rule") or "us")
                  for x in (row.entities or ()))
    return ApiKeyInfo(id=row.id, prefix=row.prefix, entity_ids=tuple(x.id for x in bound), scope=row.scope,
                      label=row.label, created_at=row.created_at, entities=bound), row.snapshot


def verify_api_key(conn: Connection, key: str | None) -> ApiKeyInfo | None:
    """The key's info if it is well formed, known and not revoked; else None.

    The stored hash is compared in constant time; an unknown prefix still costs one comparison.
    """
    return verify_api_key_at_snapshot(conn, key)[0]


def revoke_api_key(conn: Connection, prefix: str) -> bool:
    """Revoke the key with this prefix (``cf_`` and the secret may be included; only the prefix is used).

    True if a live key was revoked, False if none matched or it was already revoked.
    """
    text = prefix.strip()
    if text.startswith("cf_"):
        text = text[3:]
    text = text.split("_", 1)[0]
    result = conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.prefix == text, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )
    return result.rowcount > 0


def list_api_keys(conn: Connection, entity_ids: Sequence[int] | int | None = None) -> list[ApiKeyRecord]:
    """Stored keys (never a secret or hash); with ``entity_ids``, only keys bound to one of them."""
    k, ke = api_keys.c, api_key_entities.c
    query = (
        sa.select(k.id, k.prefix, k.scope, k.label, k.created_at, k.revoked_at,
                  sa.func.array_agg(aggregate_order_by(ke.entity_id, ke.entity_id)).label("entity_ids"),
                  sa.func.array_agg(aggregate_order_by(entities.c.name, ke.entity_id)).label("entities"))
        .select_from(api_keys.join(api_key_entities, ke.api_key_id == k.id)
                     .join(entities, entities.c.id == ke.entity_id))
        .group_by(k.id)
        .order_by(k.id)
    )
    if entity_ids is not None:
        ids = [entity_ids] if isinstance(entity_ids, int) else list(entity_ids)
        other = api_key_entities.alias("visible")
        query = query.where(sa.exists().where(other.c.api_key_id == k.id, other.c.entity_id.in_(ids)))
    return [ApiKeyRecord(id=r.id, prefix=r.prefix, scope=r.scope, entity_ids=tuple(r.entity_ids),
                         entities=tuple(r.entities), label=r.label, created_at=r.created_at, revoked_at=r.revoked_at)
            for r in conn.execute(query)]


class RateLimiter:
    """At most ``per_minute`` requests per key in each clock minute (in-process; 0 disables).

    Good for one API process; several processes each count their own share (``SharedRateLimiter`` counts for all).
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._window = 0
        self._counts: dict[str, int] = {}

    def hit(self, key_id: str, now: float | None = None) -> int | None:
        """Count one request; None if allowed, else the seconds to wait before the next window."""
        if self.per_minute <= 0:
            return None
        now = time.time() if now is None else now
        window = int(now // 60)
        with self._lock:
            if window != self._window:
                self._window = window
                self._counts.clear()
            count = self._counts.get(key_id, 0) + 1
            self._counts[key_id] = count
        return _verdict(self.per_minute, count, window, now)

    async def ahit(self, key_id: str) -> int | None:
        return self.hit(key_id)


def _verdict(per_minute: int, count: int, window: int, now: float) -> int | None:
    if count > per_minute:
        return max(1, int((window + 1) * 60 - now + 0.999))
    return None


class SharedRateLimiter:
    """``RateLimiter`` counted in Redis, so every API worker (and every API host) shares one count per key and
    minute: ``INCR coinfrs:ratelimit:<minute>:<key prefix>`` with a two-minute expiry, one round trip, on the event
    loop (redis.asyncio). When Redis does not answer within ``timeout`` seconds the request is counted in-process
    instead (a warning once a minute): a Redis outage degrades the limit to per worker, it never refuses requests.
    """

    def __init__(self, per_minute: int, url: str, *, timeout: float = 0.25, namespace: str = "coinfrs:ratelimit") -> None:
        self.per_minute = per_minute
        self.url = url
        self.timeout = timeout
        self.namespace = namespace
        self.fallback = RateLimiter(per_minute)
        self._clients: dict[int, Any] = {}  # one client per event loop (a TestClient runs its own loop)
        self._warned_window = -1

    def _client(self) -> Any:
        import asyncio

        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            client = redis.Redis.from_url(self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout)
            self._clients = {id(loop): client}  # an earlier loop's client is not reused on this one
        return client

    async def ahit(self, key_id: str) -> int | None:
        if self.per_minute <= 0:
            return None
        now = time.time()
        window = int(now // 60)
        name = f"{self.namespace}:{window}:{key_id}"
        try:
            async with self._client().pipeline(transaction=True) as pipe:
                count, _ = await pipe.incr(name).expire(name, 120).execute()
        except Exception as exc:  # noqa: BLE001 - redis.RedisError, OSError, timeouts: count in-process instead
            if self._warned_window != window:
                self._warned_window = window
                logger.warning("rate limit: Redis did not answer (%s); counting per worker until it does",
                               type(exc).__name__)
            return self.fallback.hit(key_id, now)
        return _verdict(self.per_minute, int(count), window, now)


def make_rate_limiter(per_minute: int, redis_url: str | None) -> RateLimiter | SharedRateLimiter:
    """Shared through Redis when ``COINFRS_REDIS_URL`` is set, else in-process."""
    return SharedRateLimiter(per_minute, redis_url) if redis_url else RateLimiter(per_minute)
