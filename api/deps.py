"""Shared dependencies as ``Annotated`` aliases: the request's DB connection, the API key, the entity.

Order matters and is deliberate: a missing or malformed key is refused (401) before a database
connection is taken; the connection is read-only with a 15 s statement timeout; the entity is
resolved only among the key's own entities, and any other entity is "not found" (404), exactly
like one that does not exist.

The API has its own connection pool (``api_engine``): every session is opened read-only with the
statement timeout (``options`` at connect), so a request costs no ``SET`` round trip and no pre-ping;
the pool keeps ``COINFRS_API_DB_POOL_SIZE`` connections open (default 8: the process runs that many requests at
once, the others wait their turn in order), so a busy API does not open and close a connection per request. More
threads do not make a 2-core machine faster, only less fair: at 50 clients on 1M legs with every answer computed,
p95 of positions 141-153 ms with 8, 153-174 ms with 20 (docs/api.md, "Benchmark"). Its sessions are in
autocommit: under READ COMMITTED every statement takes its own snapshot anyway, so a BEGIN/ROLLBACK pair per
request would only cost two round trips (a streamed export, which needs a server-side cursor, opens a
REPEATABLE READ transaction: one snapshot for the whole file).

Each request crosses into a route thread (``in_route_thread``) as few times as possible: ``get_current_key``
admits a key already verified in the current database snapshot from memory (``api.snapshots``), else verifies it
in one hop (holding a pooled connection only for that query); the dependencies that only read what it found are
``async``.
A cacheable route takes its own connection inside the route's hop, and only when the cache cannot answer
(``api.cache``); other routes take theirs with ``ConnDep``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable
from datetime import date
from functools import lru_cache
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.engine import Connection, Engine

from api.errors import AuthenticationFailed, AuthorizationFailed, NotFound, RateLimited, ServiceUnavailable, Unprocessable
from api.security import ApiKeyInfo, RateLimiter, SharedRateLimiter, parse_key, verify_api_key_at_snapshot
from api.snapshots import KeyCache, SnapshotWatch
from warehouse.db import database_url, normalize_url, role_options, session_role
from warehouse.entities import Entity
from warehouse.settings import get_settings

T = TypeVar("T")
STATEMENT_TIMEOUT = "15s"
SESSION_OPTIONS = (f"-c statement_timeout={STATEMENT_TIMEOUT} -c default_transaction_read_only=on "
                   "-c plan_cache_mode=force_generic_plan")
"""Set once per connection at connect: every query of the API runs read-only under the statement timeout, as the
read-only role ``COINFRS_API_DB_ROLE`` (``coinfrs_api``, SELECT only: migration 0026).

``plan_cache_mode=force_generic_plan``: psycopg prepares a statement run a fifth time on a connection, and the
API's statements are few fixed shapes led by an index on the entity (and a date or time range), whose plan does
not depend on the values. PostgreSQL's default would plan them again on every run: the seven-table transactions
page cost 1.6 ms of database CPU so, 0.6 ms with its generic plan (benchmarks/bench_api.py, 1M legs)."""

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key `cf_<prefix>_<secret>` bound to one or more entities (`coinfrs apikey create`).",
)


@lru_cache(maxsize=8)
def api_engine(url: str, pool_size: int, role: str | None = None) -> Engine:
    """The API's pool on ``url``: read-only sessions with the statement timeout; ``pool_size`` connections kept
    open for the request threads (as many as the process runs at once: ``api.main`` bounds its thread pool to
    ``pool_size``, so a busy API does not open and close an overflow connection per request, each a PostgreSQL
    backend to fork) plus one for the version watch's poll, as many again opened for bursts (beyond that a
    request waits up to 10 s for one, then 503). No
    pre-ping (one round trip less per request): after a database restart the first request on a dead
    connection is a 503 and the pool is renewed."""
    return sa.create_engine(url, pool_size=pool_size + 1, max_overflow=pool_size, pool_timeout=10, pool_pre_ping=False,
                            isolation_level="AUTOCOMMIT",
                            connect_args={"options": f"{SESSION_OPTIONS} {role_options(role)}".strip(),
                                          "connect_timeout": 5})


def api_engine_for(engine: Engine | None = None) -> Engine:
    """The API pool on ``engine``'s database (default: the warehouse's: the API's own login
    ``COINFRS_API_DATABASE_URL`` when set, else ``DATABASE_URL`` or the embedded server, switching to
    ``COINFRS_API_DB_ROLE``)."""
    settings = get_settings()
    if engine is not None:
        url = engine.url.render_as_string(hide_password=False)
    else:
        url = settings.api_database_url or database_url()
    url = normalize_url(url)
    return api_engine(url, settings.api_db_pool_size, session_role(url, settings.api_db_role or None))


def app_engine(app: FastAPI) -> Engine:
    """The app's API pool, resolved on first use: the embedded server starts only when needed."""
    engine = getattr(app.state, "api_engine", None)
    if engine is None:
        engine = app.state.api_engine = api_engine_for(getattr(app.state, "engine", None))
    return engine


def get_app_engine(request: Request) -> Engine:
    return app_engine(request.app)


def checkout_connection(request: Request) -> Connection:
    """A read-only connection of the API pool (statement timeout, autocommit); 503 when the database is down or
    every connection stays busy for 10 s. Close it to give it back."""
    try:
        return get_app_engine(request).connect()
    except sa.exc.OperationalError:
        raise ServiceUnavailable("the database is unavailable; retry later") from None
    except sa.exc.TimeoutError:  # every pooled connection busy for 10 s
        raise ServiceUnavailable("the API is busy; retry later") from None


async def in_route_thread(request: Request, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in one of the app's route threads (``app.state.route_threads``: as many as the database pool
    keeps connections, ``COINFRS_API_DB_POOL_SIZE``), with the request's context variables (its request id for the
    logs). The event loop goes on serving other requests meanwhile.

    A plain ``ThreadPoolExecutor`` rather than Starlette's ``run_in_threadpool`` (anyio's worker threads): anyio looks
    up the running library, its thread limiter and its run-variables on every call. At 50 clients on 1M legs
    (benchmarks/bench_api.py, response cache off) this hop is the one every uncached answer takes."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(request.app.state.route_threads, context.run, func, *args)


async def _admit(request: Request, info: ApiKeyInfo, snapshot: str) -> ApiKeyInfo:
    """Count the request against the key's rate limit (429 beyond it) and note the key and the snapshot it was
    checked in (``request.state.db_snapshot``: the warehouse's data version, ``coinfrs_data_version()``, migration
    0031; the response cache's validity, ``api.cache``)."""
    limiter: RateLimiter | SharedRateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        wait = await limiter.ahit(info.prefix)
        if wait is not None:
            raise RateLimited(wait)
    request.state.api_key_prefix = info.prefix  # for logs: the prefix only, never the key
    request.state.db_snapshot = snapshot
    return info


def _verify_in_database(request: Request, key: str) -> tuple[ApiKeyInfo, str]:
    """Verify the key on a pooled connection, held only for that query (in a route thread: the checkout and the
    query may wait on the network). A request holds no connection while it waits for its turn on the event loop,
    so a pool of ``COINFRS_API_DB_POOL_SIZE`` serves many more concurrent requests without opening and closing
    overflow connections (each one a PostgreSQL backend to fork)."""
    with checkout_connection(request) as conn:
        info, snapshot = verify_api_key_at_snapshot(conn, key)
    if info is None or snapshot is None:
        raise AuthenticationFailed()
    return info, snapshot


async def get_current_key(request: Request,
                          header: Annotated[str | None, Security(api_key_header)]) -> ApiKeyInfo:
    """The request's verified, rate-limited key. A header that has not the shape of a key is a 401 before the
    database is touched. While the snapshot watch (``api.snapshots``) reports the snapshot the key was last
    verified in, nothing has been written since (a revocation is a write): the key is admitted from memory, on
    the event loop. Otherwise it is verified in the database (one hop to a route thread).

    One dependency, not a chain of them: FastAPI's work per dependency and request is a measurable share of an
    uncached answer."""
    key = (header or "").strip()
    if parse_key(key) is None:
        raise AuthenticationFailed()
    state = request.app.state
    watch: SnapshotWatch | None = getattr(state, "snapshot_watch", None)
    keys: KeyCache | None = getattr(state, "key_cache", None)
    snapshot = watch.current() if watch is not None else None
    if snapshot is not None and keys is not None:
        info = keys.get(key, snapshot)
        if info is not None:
            return await _admit(request, info, snapshot)
    info, verified_in = await in_route_thread(request, _verify_in_database, request, key)
    if keys is not None:
        keys.put(key, verified_in, info)
    return await _admit(request, info, verified_in)


CurrentKey = Annotated[ApiKeyInfo, Depends(get_current_key)]


async def get_connection(request: Request, key: CurrentKey) -> AsyncIterator[Connection]:
    """The route's read-only connection, checked out (in a route thread) only after the key is verified. It goes
    back to the pool on the event loop: in autocommit that is no I/O (only a route that began a transaction
    leaves a ROLLBACK to send)."""
    conn = await in_route_thread(request, checkout_connection, request)
    try:
        yield conn
    finally:
        conn.close()


def open_stream_connection(request: Request) -> Connection:
    """A second read-only connection (same timeout) for a streamed export, in a REPEATABLE READ transaction (a
    server-side cursor needs one, and the whole file then reads one snapshot); the stream closes it."""
    conn = checkout_connection(request).execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    return conn


ConnDep = Annotated[Connection, Depends(get_connection)]


async def require_admin(key: CurrentKey) -> ApiKeyInfo:
    """The key, if its scope is ``admin``; else 403 AUTHORIZATION_ERROR."""
    if not key.is_admin:
        raise AuthorizationFailed("this route needs an API key with the admin scope",
                                  [{"field": None, "location": "header", "message": f"key scope: {key.scope}"}])
    return key


AdminKey = Annotated[ApiKeyInfo, Depends(require_admin)]


def max_range_days(request: Request) -> int:
    configured = getattr(request.app.state, "max_range_days", None)
    return configured if configured is not None else get_settings().api_max_range_days


def check_date_range(request: Request, date_from: date | None, date_to: date | None, *,
                     required: bool = False) -> None:
    """422 VALIDATION_ERROR when from > to, when a required bound is missing, or when the range spans more
    days than are answered synchronously (``COINFRS_API_MAX_RANGE_DAYS``; the message names the limit): rules
    across parameters, which the OpenAPI schema cannot state."""
    if required and (date_from is None or date_to is None):
        missing = "from" if date_from is None else "to"
        raise Unprocessable.for_field(missing, f"{missing} is required (YYYY-MM-DD)")
    if date_from is None or date_to is None:
        return
    if date_from > date_to:
        raise Unprocessable.for_field("from", f"from ({date_from}) is after to ({date_to})")
    limit = max_range_days(request)
    days = (date_to - date_from).days + 1
    if days > limit:
        raise Unprocessable.for_field(
            "to", f"the range {date_from}..{date_to} spans {days} days; at most {limit} days are answered at once "
                  f"(split the range)")


async def guard_date_range(request: Request, key: CurrentKey) -> None:
    """Every ``/api/v1`` route (a router dependency, after the key is checked): a ``from``..``to`` query longer
    than the synchronous limit is a 422 naming the limit, whichever route it is (PnL, journal, closes, ...).
    Dates that do not parse are left to the route's own validation."""
    raw_from, raw_to = request.query_params.get("from"), request.query_params.get("to")
    if not raw_from or not raw_to:
        return
    try:
        date_from, date_to = date.fromisoformat(raw_from.strip()), date.fromisoformat(raw_to.strip())
    except ValueError:
        return
    if len(raw_from.strip()) == 10 and len(raw_to.strip()) == 10 and date_from <= date_to:
        check_date_range(request, date_from, date_to)


def _not_found_entity() -> NotFound:
    return NotFound("entity not found", [{"field": "entity", "location": "query",
                                          "message": "no such entity for this API key"}])


async def get_entity(
    key: CurrentKey,
    entity: Annotated[str | None, Query(
        max_length=200,
        description="The entity's name or numeric id. May be omitted when the API key is bound to one entity.",
        examples=["acme-fund"],
    )] = None,
) -> Entity:
    if entity is None or not entity.strip():
        if len(key.entity_ids) != 1:
            raise Unprocessable.for_field("entity", "entity is required: this key sees several entities")
        ref: str | int = key.entity_ids[0]
    else:
        ref = entity.strip()
    found = key.entity(ref)  # the key's entities came with the key: no query
    if found is None:
        raise _not_found_entity()
    return found


CurrentEntity = Annotated[Entity, Depends(get_entity)]
