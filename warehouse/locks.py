"""One writer per entity: a PostgreSQL advisory lock held by a close for as long as it writes.

Every close (the CLI, the schedule, the sensors, a backfill or a run launched in the Dagster UI) takes the lock of
each entity it closes before its first step and keeps it to its last (``assets.resources.WarehouseResource``);
the CLI first asks whether the entity is free and refuses with a message naming the close that holds it, or waits
for it with ``--wait``. The lock is a session lock on a connection of its own: when the process dies, PostgreSQL
drops the connection and the lock with it, so a killed close never leaves an entity locked.

The key is the pair (``CLOSE_LOCK_CLASS``, entity id); entities are always locked in id order, so two closes of
overlapping sets of entities cannot deadlock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

CLOSE_LOCK_CLASS = 0x436C6F73  # "Clos": the first key of every entity's close lock
APPLICATION_PREFIX = "coinfrs close"
POLL_SECONDS = 1.0


class EntityBusyError(RuntimeError):
    """Another close holds the entity; the message names it and says what to do."""


@dataclass(frozen=True)
class LockHolder:
    """The session that holds an entity's close lock (as ``pg_stat_activity`` shows it)."""

    pid: int
    application: str
    since: datetime | None

    def describe(self) -> str:
        what = self.application.removeprefix(APPLICATION_PREFIX).strip(" :") or "another session"
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        return f"{what} (database session {self.pid}{since})"


def lock_holder(conn: Connection, entity_id: int) -> LockHolder | None:
    """Who holds the close lock of ``entity_id`` now, if anyone."""
    row = conn.execute(sa.text(
        """SELECT a.pid, coalesce(a.application_name, '') AS app, a.backend_start AT TIME ZONE 'UTC' AS since
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.classid = CAST(:c AS oid) AND l.objid = CAST(:e AS oid)
             AND l.objsubid = 2
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           LIMIT 1"""), dict(c=CLOSE_LOCK_CLASS, e=entity_id)).first()
    return LockHolder(row.pid, row.app, row.since) if row else None


def _try_lock(conn: Connection, entity_id: int) -> bool:
    return bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:c, CAST(:e AS integer))"),
                             dict(c=CLOSE_LOCK_CLASS, e=entity_id)).scalar_one())


def _unlock(conn: Connection, entity_id: int) -> None:
    conn.execute(sa.text("SELECT pg_advisory_unlock(:c, CAST(:e AS integer))"), dict(c=CLOSE_LOCK_CLASS, e=entity_id))


def busy_message(name: str, holder: LockHolder | None) -> str:
    who = holder.describe() if holder else "another close"
    return (f"{name} is being closed by {who}: one close per entity at a time. Wait for it to finish, "
            "or run the close again with --wait to queue behind it")


@contextmanager
def entity_close_lock(engine: Engine, entities: Iterable[tuple[int, str]], *, label: str, wait: bool,
                      on_wait: Callable[[str], None] | None = None, wait_report_seconds: float = 30.0) -> Iterator[None]:
    """Hold the close lock of every ``(id, name)`` in ``entities`` for the duration of the block.

    ``wait=False`` raises ``EntityBusyError`` at once when one is held elsewhere (the locks taken so far are
    released); ``wait=True`` polls until each is free, reporting through ``on_wait`` every ``wait_report_seconds``.
    """
    wanted = sorted({int(i): n for i, n in entities}.items())
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    held: list[int] = []
    try:
        conn.execute(sa.text("SELECT set_config('application_name', :a, false)"),
                     dict(a=f"{APPLICATION_PREFIX}: {label} (pid {os.getpid()})"[:63]))
        for entity_id, name in wanted:
            reported = time.monotonic() - wait_report_seconds
            while not _try_lock(conn, entity_id):
                holder = lock_holder(conn, entity_id)
                if not wait:
                    raise EntityBusyError(busy_message(name, holder))
                if on_wait is not None and time.monotonic() - reported >= wait_report_seconds:
                    on_wait(f"waiting for {name}: held by {holder.describe() if holder else 'another close'}")
                    reported = time.monotonic()
                time.sleep(POLL_SECONDS)
            held.append(entity_id)
        yield
    finally:
        try:
            for entity_id in reversed(held):
                _unlock(conn, entity_id)
        finally:
            conn.close()


def ensure_free(engine: Engine, entities: Iterable[tuple[int, str]]) -> None:
    """Raise ``EntityBusyError`` when a close of one of ``entities`` is running now (nothing is kept locked)."""
    with entity_close_lock(engine, entities, label="probe", wait=False):
        pass
