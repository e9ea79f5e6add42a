"""The read API application: ``create_app()`` and the module-level ``app`` (``uvicorn api.main:app``)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from sqlalchemy.engine import Engine

from api.cache import ResponseCache
from api.contract import enforce_request_contract, tighten_openapi
from api.metrics import MetricsMiddleware, render_metrics
from api.deps import app_engine, guard_date_range
from api.snapshots import KeyCache, SnapshotWatch
from api.envelope import RequestContextMiddleware
from api.errors import install_exception_handlers
from api.routes import QUERY_TOO_LONG, openapi_error
from api.routes import (accounts, api_keys, assets, classifications, closes, entities, health, journal, periods, pnl,
                        positions, prices, quarantine, reconciliation, transactions)
from api.security import make_rate_limiter
from warehouse.settings import get_settings

API_PREFIX = "/api/v1"
ROUTE_MODULES = (entities, accounts, assets, positions, transactions, reconciliation, quarantine, pnl, prices, closes,
                 periods, journal, classifications, api_keys)
"""The modules whose ``router`` serves under ``API_PREFIX``."""

DESCRIPTION = """
Read API over the Coinfrs warehouse: positions at any close date, every ledger leg with its source
record, reconciliation breaks, realized PnL and daily closes.

* **Auth**: every `/api/v1` route needs the header `X-API-Key: cf_<prefix>_<secret>`; a key sees only its
  own entity. Any other entity is `404 NOT_FOUND`, exactly like one that does not exist.
* **Envelope**: `{"success": true, "data": ..., "meta": {"timestamp", "request_id", ...}}`, or
  `{"success": false, "error": {"code", "message", "details"}, "meta": {...}}`. `X-Request-ID` echoes
  `meta.request_id`.
* **Numbers**: money and quantities are exact decimal strings; timestamps ISO 8601 UTC.
* **Pagination**: lists carry `meta.next_cursor` and `meta.limit`; pass the cursor back until it is null.
* Read-only: GET only.
"""

TAGS = [
    {"name": "health", "description": "Liveness (no key needed)"},
    {"name": "entities", "description": "The companies or funds a key may read"},
    {"name": "accounts", "description": "Exchange accounts, sub-accounts and wallets"},
    {"name": "assets", "description": "The asset registry: aliases, decimals, unverified flag"},
    {"name": "positions", "description": "Computed vs reported balances per close date"},
    {"name": "transactions", "description": "Ledger legs and their raw source records"},
    {"name": "reconciliation", "description": "Completeness breaks"},
    {"name": "pnl", "description": "Realized PnL by cost-basis method and pool"},
    {"name": "closes", "description": "Daily close records, locked periods, sign-offs and their audit log"},
    {"name": "journal", "description": "Balanced journal entries per day and account for the general ledger"},
    {"name": "classifications", "description": "Legs no rule understood, and the manual classifications (who, when, why)"},
    {"name": "api-keys", "description": "Operator view of the keys (admin scope)"},
]


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, exact: FastAPI documents its own 422 (HTTPValidationError) on every route with
    parameters, which ours never answer (a parameter that breaks its schema is a 400 VALIDATION_ERROR); a 422 stays
    only where a route declares ours (``api.errors.Unprocessable``: rules across parameters). Then
    ``api.contract.tighten_openapi``: NUL excluded from free text, 400 on every operation."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                         tags=app.openapi_tags)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                responses = operation.get("responses", {})
                if "HTTPValidationError" in str(responses.get("422", "")):
                    responses.pop("422")
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    app.openapi_schema = tighten_openapi(schema, openapi_error(400))
    return app.openapi_schema


def _metrics_route(app: FastAPI) -> Any:
    def metrics() -> Response:
        """Prometheus text format: requests of every worker, ledger gauges read now (``api.metrics``)."""
        body, content_type = render_metrics(lambda: app_engine(app).connect())
        return Response(body, media_type=content_type)
    return metrics


def _lifespan(threads: int):
    """At start-up, bound anyio's thread pool, which runs FastAPI's own synchronous routes (those that are not
    cacheable, ``api.cache``), to ``threads`` (the database pool's size, ``COINFRS_API_DB_POOL_SIZE``), as the app's
    route threads are (``api.deps.in_route_thread``: cacheable routes and key checks): anyio's default of 40
    threads would let more requests hold a connection at once than the pool keeps, and every one beyond it opens
    and closes a connection of its own. Both pools busy at once hold at most twice ``threads`` connections: the
    pool's overflow (``api.deps.api_engine``) covers that. At shutdown the route threads stop.

    Then settle the heap: everything loaded so far (FastAPI, pydantic, SQLAlchemy, the app: a few hundred thousand
    objects that live as long as the process) is moved out of the garbage collector's reach (``gc.freeze``), and
    the young generation is collected every 20,000 allocations instead of 700. Each full collection walked that
    heap, a pause taken by whichever requests were running: with the response cache off, 50 clients on 1M legs
    (benchmarks/bench_api.py) saw p99 of 260-307 ms for positions and 120-134 ms for the PnL summary without this,
    187-212 ms and 65-72 ms with it (docs/api.md, "Benchmark")."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        try:
            yield
        finally:
            app.state.route_threads.shutdown(wait=False, cancel_futures=True)
    return lifespan


def create_app(*, engine: Engine | None = None, rate_limit_per_minute: int | None = None,
               cors_origins: list[str] | None = None, max_range_days: int | None = None,
               cache_mb: int | None = None, snapshot_poll_ms: int | None = None,
               redis_url: str | None = None) -> FastAPI:
    """The API. ``engine``: a warehouse engine (default: ``warehouse.db.get_engine()`` at request time).
    ``rate_limit_per_minute``: requests per key per minute (default: settings; 0 disables).
    ``redis_url``: count the rate limit in this Redis, shared by every worker (default: ``COINFRS_REDIS_URL``;
    unset: each process counts its own).
    ``cors_origins``: origins allowed by CORS (default: settings, empty: CORS off).
    ``max_range_days``: longest from..to range answered synchronously (default: settings).
    ``cache_mb``: size of the response cache of unchanged answers (default: settings; 0 disables; ``api.cache``).
    ``snapshot_poll_ms``: how often the database snapshot is polled (default: settings; 0: a query per request to
    check the key and the cache; ``api.snapshots``)."""
    settings = get_settings()
    app = FastAPI(
        title="Coinfrs read API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url="/docs",
        redoc_url="/redoc",
        # every route: unknown or repeated query parameters and NUL characters refused first (api.contract)
        dependencies=[Depends(enforce_request_contract)],
        lifespan=_lifespan(settings.api_db_pool_size),
    )
    app.state.engine = engine
    # cacheable routes and key checks run here (api.deps.in_route_thread); threads start on first use
    app.state.route_threads = ThreadPoolExecutor(settings.api_db_pool_size, thread_name_prefix="coinfrs-api-route")
    per_minute = settings.api_rate_limit_per_minute if rate_limit_per_minute is None else rate_limit_per_minute
    app.state.rate_limiter = make_rate_limiter(per_minute, redis_url if redis_url is not None else settings.redis_url)
    app.state.max_range_days = settings.api_max_range_days if max_range_days is None else max_range_days
    app.state.response_cache = ResponseCache(
        (settings.api_cache_mb if cache_mb is None else cache_mb) * 1024 * 1024)
    poll_ms = settings.api_snapshot_poll_ms if snapshot_poll_ms is None else snapshot_poll_ms
    app.state.snapshot_watch = SnapshotWatch(lambda: app_engine(app), poll_ms / 1000)
    app.state.key_cache = KeyCache()

    install_exception_handlers(app)
    origins = settings.api_cors_origins if cors_origins is None else cors_origins
    if origins:  # CORS is off unless origins are configured: read-only GETs with the key header
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET"],
                           allow_headers=["X-API-Key", "X-Request-ID", "Accept"], expose_headers=["X-Request-ID"],
                           allow_credentials=False, max_age=600)
    app.add_middleware(RequestContextMiddleware, max_query_bytes=settings.api_max_query_bytes,
                       max_body_bytes=settings.api_max_body_bytes)
    app.add_middleware(MetricsMiddleware)  # outermost: counts every answer, the middleware's refusals too

    app.include_router(health.router, responses=QUERY_TOO_LONG)
    app.add_api_route("/metrics", _metrics_route(app), methods=["GET"], include_in_schema=False)
    # every route answers 414 to an over-long query string (RequestContextMiddleware): documented once for all
    v1 = APIRouter(prefix=API_PREFIX, dependencies=[Depends(guard_date_range)], responses=QUERY_TOO_LONG)
    for module in ROUTE_MODULES:
        v1.include_router(module.router)
    app.include_router(v1)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


app = create_app()
