"""What the warehouse looks like now, known without a query per request: ``SnapshotWatch`` and ``KeyCache``.

A background thread of each API process reads the warehouse's data version, ``coinfrs_data_version()`` (migration
0031), every ``COINFRS_API_SNAPSHOT_POLL_MS`` (default 100 ms) while requests arrive. The version changes when a
transaction that wrote to a table of the warehouse's database ends (triggers on every table note the writer), and
only then: writes to other databases of the same server (Dagster's storage) leave it as it is. So as long as it is
unchanged nothing has been written to the warehouse since:

- a key verified in a version is still valid (revoking it is a write to ``api_keys``), so ``KeyCache`` answers the
  key check of the next requests from memory, with no thread-pool hop and no query;
- the response cache (``api.cache``) keeps serving the answers it holds for that version.

(The names say "snapshot": until migration 0031 this was ``pg_current_snapshot()``, which is the whole server's.)

Both therefore answer as of the last poll: at most one poll interval (plus the poll's own query) behind the
database. A write is visible to the API at most ~0.1 s after its commit, and a revoked key is refused at most
~0.1 s after the revocation. If the poll fails or falls behind (older than ``max_age``), requests go back to
checking their key, and reading the snapshot, in the database, as each request did without the watch.

The thread starts with the first request and stops after ``idle_after`` seconds without one: an idle API does
not poll the database. ``COINFRS_API_SNAPSHOT_POLL_MS=0`` turns the watch off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.security import ApiKeyInfo, hash_key

log = logging.getLogger("coinfrs.api")

SNAPSHOT = sa.text("SELECT coinfrs_data_version()")


class SnapshotWatch:
    """The latest data version (``coinfrs_data_version()``), read every ``interval`` seconds by a daemon thread."""

    def __init__(self, engine: Callable[[], Engine], interval: float, *, max_age: float = 1.0,
                 idle_after: float = 30.0) -> None:
        self._engine = engine
        self.interval = interval
        self.max_age = max(max_age, 3 * interval)
        self.idle_after = idle_after
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._snapshot: str | None = None
        self._read_at = 0.0
        self._asked_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def polling(self) -> bool:
        """Whether the poll thread runs (it stops ``idle_after`` seconds after the last request)."""
        return self._thread is not None and self._thread.is_alive()

    def current(self) -> str | None:
        """The snapshot of the last poll if it is fresh (younger than ``max_age``), else None; starts the poll."""
        if not self.enabled:
            return None
        now = time.monotonic()
        self._asked_at = now
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._poll, name="coinfrs-snapshot-watch", daemon=True)
                    self._thread.start()
            return None
        snapshot, read_at = self._snapshot, self._read_at
        return snapshot if now - read_at < self.max_age else None

    def _poll(self) -> None:
        failing = False
        while time.monotonic() - self._asked_at < self.idle_after:
            started = time.monotonic()
            try:
                with self._engine().connect() as conn:
                    snapshot = conn.execute(SNAPSHOT).scalar_one()
                self._snapshot, self._read_at = snapshot, started  # the time the read began: conservative
                failing = False
            except Exception as exc:  # the database is down or restarting: requests check in the database
                self._snapshot = None
                if not failing:
                    log.warning("snapshot watch: cannot read the database snapshot (%s)", type(exc).__name__)
                failing = True
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        self._snapshot = None


class KeyCache:
    """Keys verified in a snapshot, by their SHA-256: valid while the watch reports that same snapshot."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, tuple[str, ApiKeyInfo]] = OrderedDict()

    def get(self, key: str, snapshot: str) -> ApiKeyInfo | None:
        digest = hash_key(key)
        with self._lock:
            found = self._keys.get(digest)
            if found is None or found[0] != snapshot:
                return None
            self._keys.move_to_end(digest)
            return found[1]

    def put(self, key: str, snapshot: str, info: ApiKeyInfo) -> None:
        digest = hash_key(key)
        with self._lock:
            self._keys[digest] = (snapshot, info)
            self._keys.move_to_end(digest)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
