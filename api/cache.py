"""A per-process cache of JSON answers, valid while the warehouse has not changed.

Closed books are read far more often than they are written: the same positions at a month end, the same page of
legs, the same PnL summary, asked again and again between two nightly closes. ``ResponseCache`` keeps the data of
such answers (not their ``meta.timestamp`` and ``meta.request_id``, which are fresh on every response) and serves
them again for as long as the database is exactly as it was.

"Exactly as it was" is the warehouse's data version (``coinfrs_data_version()``, migration 0031): it changes when
a transaction that wrote to a table of the warehouse's database commits or rolls back, and never for writes
elsewhere on the server (Dagster's storage in another database, say). A request knows the version from the
version watch (``api.snapshots``: polled every 100 ms, so answers are at most a poll behind a write) or, without a
fresh poll, from its key check (read in the same statement). An answer is served only to requests that see the
version it was computed in, and the first request that sees a new version drops every entry (so the cache never
holds two generations). An answer computed while a write was committing is stored under the older version it
was asked with, which no later request sees.

What may be cached: answers that depend only on the database and the URL (``cached_by_snapshot`` on the route).
Not the accounts list (its freshness is measured against the clock), not the operator routes, not exports.

``COINFRS_API_CACHE_MB`` bounds each process's cache (default 64 MB; 0 turns it off). Least recently used
answers go first.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from api.deps import checkout_connection, in_route_thread
from api.envelope import EnvelopeResponse, meta
from api.exports import requested_format

F = TypeVar("F", bound=Callable[..., Any])
CACHE_HEADER = "X-Cache"
"""On a cacheable route's answer: ``hit`` (served from the cache) or ``miss`` (computed now)."""


@dataclass(frozen=True)
class CachedAnswer:
    data: Any
    """The answer's ``data``, kept as its JSON text (an ``orjson.Fragment``): a cached page is one bytes object, not
    thousands of strings and dicts for the garbage collector to walk, and serving it renders nothing again."""
    extra_meta: dict[str, Any]
    size: int


class ResponseCache:
    """Answers by URL and entity, valid for one database snapshot, at most ``max_bytes`` of rendered JSON."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], CachedAnswer] = OrderedDict()
        self._bytes = 0
        self._snapshot: str | None = None
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _see(self, snapshot: str) -> bool:
        """Note the snapshot a request sees (under the lock); True if it is the cache's. A newer one empties it."""
        if snapshot == self._snapshot:
            return True
        self._entries.clear()
        self._bytes = 0
        self._snapshot = snapshot
        return False

    def get(self, key: tuple[Any, ...], snapshot: str) -> CachedAnswer | None:
        with self._lock:
            found = self._entries.get(key) if self._see(snapshot) else None
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: tuple[Any, ...], snapshot: str, answer: CachedAnswer) -> None:
        if answer.size > self.max_bytes:
            return
        with self._lock:
            if snapshot != self._snapshot:  # asked under an older snapshot: the database has moved on since
                return
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= previous.size
            self._entries[key] = answer
            self._bytes += answer.size
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.size

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "hits": self.hits, "misses": self.misses}


def cached_by_snapshot(route: F) -> F:
    """Serve the route's JSON answer from the app's ``ResponseCache`` while the database snapshot is unchanged.

    The route must take ``request: Request`` and ``entity: CurrentEntity`` (and ``fmt``, if it exports); only JSON
    answers are cached (not a ``format`` or ``Accept`` asking for CSV/XLSX); the key is the entity and the full
    URL (the query, and the host, which links in an answer may name). The key, its scope and the entity have been
    checked by the dependencies before this runs, as for any request. The route's ``conn`` (if it takes one) is
    checked out only when the cache cannot answer, in the same thread-pool hop as the route. Exports (anything but
    an ``EnvelopeResponse``) pass through."""

    signature = inspect.signature(route)
    takes_connection = "conn" in signature.parameters

    def compute(request: Request, kwargs: dict[str, Any]) -> Any:
        if not takes_connection:
            return route(**kwargs)
        with checkout_connection(request) as conn:
            return route(**kwargs, conn=conn)

    @functools.wraps(route)
    async def serve(**kwargs: Any) -> Any:
        request: Request = kwargs["request"]
        cache: ResponseCache | None = getattr(request.app.state, "response_cache", None)
        snapshot: str | None = getattr(request.state, "db_snapshot", None)
        if cache is None or not cache.enabled or snapshot is None or \
                requested_format(request, kwargs.get("fmt")) != "json":  # exports (format or Accept) are not cached
            return await in_route_thread(request, compute, request, kwargs)
        key = (kwargs["entity"].id, str(request.url))
        found = cache.get(key, snapshot)
        if found is not None:  # answered on the event loop: no thread, no query beyond the key check
            return EnvelopeResponse({"success": True, "data": found.data, "meta": meta(request, **found.extra_meta)},
                                    headers={CACHE_HEADER: "hit"})
        response = await in_route_thread(request, compute, request, kwargs)
        response.headers[CACHE_HEADER] = "miss"
        if isinstance(response, EnvelopeResponse) and response.status_code == 200:
            envelope = response.envelope
            extra = {k: v for k, v in envelope["meta"].items() if k not in ("timestamp", "request_id")}
            cache.put(key, snapshot, CachedAnswer(response.data_json, extra, len(response.body)))
        return response

    # FastAPI reads this signature: the route's, without ``conn`` (taken above, only on a miss)
    serve.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name != "conn"])
    return serve  # type: ignore[return-value]
