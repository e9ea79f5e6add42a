"""``GET /metrics``: Prometheus text format (prometheus-client), aggregated across the API's worker processes.

Request metrics are counted in each worker and aggregated by prometheus-client's multiprocess mode: every worker
writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (``api.server.serve`` / ``coinfrs serve`` creates a
fresh directory and passes it to the workers), and whichever worker answers a scrape reads them all. Without
that variable (one process, e.g. ``uvicorn api.main:app``), the process's own registry is served.

Ledger figures are read from the database at scrape time (``ledger_gauges``), so they are the same whichever worker
answers: closes by status, open breaks, unpriced items (missing prices of the closes), source health, sync lag and
circuit breakers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ingestion.retry import BREAKER_STATES

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("coinfrs_api_requests_total", "HTTP requests answered, by route template, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("coinfrs_api_request_duration_seconds", "Time to answer a request, by route template and method",
                    ["route", "method"], buckets=BUCKETS)


class MetricsMiddleware:
    """Counts every HTTP request by its route template (``/api/v1/transactions/{tx_id}``, never the raw path, so
    the label set stays bounded; ``unmatched`` for no route) with its status and latency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            template = route_template(scope)
            method = scope.get("method", "")
            REQUESTS.labels(template, method, str(status["code"])).inc()
            LATENCY.labels(template, method).observe(time.perf_counter() - started)


_TEMPLATES: dict[int, str] = {}


def route_template(scope: Scope) -> str:
    """The full path template of the route that answered (``/api/v1/transactions/{tx_id}``), or ``unmatched``.
    FastAPI keeps an included router's routes with their own paths, without the router's prefix: the prefix is
    what of the request path the route's own pattern does not match (found once per route)."""
    route = scope.get("route")
    own = getattr(route, "path_format", None)
    if own is None:
        return "unmatched"
    found = _TEMPLATES.get(id(route))
    if found is None:
        path, pattern = scope.get("path", ""), route.path_regex  # type: ignore[union-attr]
        prefix = next((path[:i] for i in range(len(path) + 1) if pattern.match(path[i:])), "")
        found = _TEMPLATES[id(route)] = prefix + own
    return found


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


def ledger_gauges(conn: Connection, now: datetime | None = None) -> list[Gauge]:
    """The ledger's health as gauges, read now: closes per entity and status, open breaks, unpriced items, and per
    stored source its last sync status (1 for the status it is in), the seconds since its last sync, its circuit
    breaker's state (``ingestion.breakers``: all three states, 1 for the current one, so an alert can match
    ``state="open"``) and its failed syncs in a row; per source of any kind (wallets' chains included) the outage
    days still recorded (``reconciliation.outages``: a later successful sync clears them); per wallet the seconds
    since its sync last moved one of its cursors (``ingestion_cursors``)."""
    now = now or datetime.now(timezone.utc)
    closes = conn.execute(sa.text(
        "SELECT e.name, c.status, count(*) AS n, coalesce(sum(c.missing_prices), 0) AS unpriced "
        "FROM closes c JOIN entities e ON e.id = c.entity_id GROUP BY e.name, c.status")).all()
    open_breaks = conn.execute(sa.text(
        "SELECT e.name, count(*) AS n FROM breaks b JOIN entities e ON e.id = b.entity_id "
        "WHERE b.status = 'open' GROUP BY e.name")).all()
    sources = conn.execute(sa.text(
        "SELECT e.name AS entity, s.name, s.kind, s.enabled, s.last_sync_at, coalesce(s.last_sync_status, 'never') AS st, "
        "coalesce(b.state, 'closed') AS breaker, coalesce(b.consecutive_failures, 0) AS failures "
        "FROM source_credentials s JOIN entities e ON e.id = s.entity_id "
        "LEFT JOIN source_breakers b ON b.source_id = s.id")).all()
    outages = conn.execute(sa.text(
        "SELECT e.name AS entity, o.source, o.stream, count(*) AS days "
        "FROM source_outages o JOIN entities e ON e.id = o.entity_id GROUP BY e.name, o.source, o.stream")).all()
    # a wallet's cursors are kept under its account name, `<chain>:<address>` (ingestion.wallets.Wallet.account)
    wallets = conn.execute(sa.text(
        "SELECT e.name AS entity, w.chain, w.address, max(c.updated_at) AS last_progress "
        "FROM chain_wallets w JOIN entities e ON e.id = w.entity_id "
        "LEFT JOIN ingestion_cursors c ON c.entity_id = w.entity_id AND c.account = w.chain || ':' || w.address "
        "GROUP BY e.name, w.chain, w.address")).all()
    unpriced: dict[str, float] = {}
    for r in closes:
        unpriced[r.name] = unpriced.get(r.name, 0) + float(r.unpriced)
    return [
        Gauge("coinfrs_closes", "Close records per entity and status", ("entity", "status"),
              [((r.name, r.status), float(r.n)) for r in closes]),
        Gauge("coinfrs_open_breaks", "Open reconciliation breaks per entity", ("entity",),
              [((r.name,), float(r.n)) for r in open_breaks]),
        Gauge("coinfrs_unpriced_items", "Missing-price items of the stored closes per entity", ("entity",),
              [((name,), n) for name, n in unpriced.items()]),
        Gauge("coinfrs_source_up", "1 when a stored source's last sync succeeded, else 0",
              ("entity", "source", "kind", "status"),
              [((r.entity, r.name, r.kind, r.st), 1.0 if r.st == "succeeded" else 0.0) for r in sources if r.enabled]),
        Gauge("coinfrs_source_sync_lag_seconds", "Seconds since a stored source last synced (absent: never synced)",
              ("entity", "source", "kind"),
              [((r.entity, r.name, r.kind), (now - r.last_sync_at).total_seconds())
               for r in sources if r.enabled and r.last_sync_at is not None]),
        Gauge("coinfrs_source_circuit_breaker",
              "A stored source's circuit breaker: 1 for the state it is in (closed, open, half_open), 0 for the others",
              ("entity", "source", "kind", "state"),
              [((r.entity, r.name, r.kind, state), 1.0 if r.breaker == state else 0.0)
               for r in sources if r.enabled for state in BREAKER_STATES]),
        Gauge("coinfrs_source_outage_days",
              "Days a source (exchange, custodian, chain; stream '*' for all of it) is recorded down and not synced "
              "since: their closes are partial", ("entity", "source", "stream"),
              [((r.entity, r.source, r.stream), float(r.days)) for r in outages]),
        Gauge("coinfrs_wallet_sync_lag_seconds",
              "Seconds since a wallet's sync last recorded progress (a block, a signature or a day's balances; "
              "absent: never synced)", ("entity", "chain", "address"),
              [((r.entity, r.chain, r.address), (now - r.last_progress).total_seconds())
               for r in wallets if r.last_progress is not None]),
        Gauge("coinfrs_source_consecutive_failures", "Failed syncs of a stored source since its last success",
              ("entity", "source", "kind"),
              [((r.entity, r.name, r.kind), float(r.failures)) for r in sources if r.enabled]),
    ]


class LedgerCollector(Collector):
    """``ledger_gauges`` on each scrape, through ``connect`` (a read-only connection of the API pool)."""

    def __init__(self, connect: Any) -> None:
        self.connect = connect

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.connect() as conn:
            gauges = ledger_gauges(conn)
        for gauge in gauges:
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=list(gauge.labels))
            for labels, value in gauge.samples:
                family.add_metric(list(labels), value)
            yield family


def render_metrics(connect: Any) -> tuple[bytes, str]:
    """The exposition text: the request metrics of every worker (multiprocess mode when configured, else this
    process's) and the ledger gauges read now."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(LedgerCollector(connect))
    return generate_latest(registry), CONTENT_TYPE_LATEST
