"""The CLI's Dagster instance (also the tests', the benchmark's and what `coinfrs ui` shows).

Home: ``DAGSTER_HOME`` if set, else ``<data_dir>/dagster``. Its ``dagster.yaml`` (written when missing) keeps run,
event-log and schedule storage in PostgreSQL through dagster-postgres, in a database of its own on the warehouse's
server: ``<warehouse database>_dagster`` (DATABASE_URL's server, else the embedded one), created when missing.
A database of its own, not the warehouse's: Dagster writes an event per asset, check and day, and none of those
writes touches the warehouse's tables (the API's response cache, docs/api.md). The URL reaches ``dagster.yaml``
through ``COINFRS_DAGSTER_STORAGE_URL`` (``warehouse.db.DAGSTER_STORAGE_ENV``), which ``dagster_home()`` sets for
this process and the processes it starts (`coinfrs ui`), so the file stays right when DATABASE_URL changes.

The bookkeeping, cut (README, "Benchmarks"):
- ``DAGSTER_EVENT_BATCH_SIZE``: Dagster writes the materialization events of a partitioned output in batches
  (one INSERT per batch; dagster-postgres has the fast path, SQLite none). Asset check evaluations are not
  batchable in Dagster 1.13 (``BATCH_WRITABLE_EVENTS``): they are written one by one.
- dagster-postgres opens a new connection for every write (``NullPool``). The CLI's instance keeps one pooled
  connection per storage instead (``optimize_for_webserver``, what Dagster's own webserver does), which is most
  of the per-event cost on PostgreSQL.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from warehouse.db import DAGSTER_STORAGE_ENV, dagster_database_url, database_url, ensure_database
from warehouse.settings import get_settings

if TYPE_CHECKING:
    import dagster as dg

# Dagster's opt-in batch writing of materialization events (dagster-io/dagster#19862), for every process that
# imports the close (the CLI, the code location, run workers). The batch is flushed at the end of each output.
EVENT_BATCH_SWITCH = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = "1000"
os.environ.setdefault(EVENT_BATCH_SWITCH, EVENT_BATCH_SIZE)

LOCAL_DAGSTER_YAML = f"""# The local Dagster instance of Coinfrs (orchestration/instance.py): the CLI's closes and `coinfrs ui`.
# Runs, event log and schedules in PostgreSQL, in the database <warehouse database>_dagster on the warehouse's
# server; coinfrs sets {DAGSTER_STORAGE_ENV} before it opens the instance. Written when missing: edit freely.
storage:
  postgres:
    postgres_url:
      env: {DAGSTER_STORAGE_ENV}
telemetry:
  enabled: false
nux:
  enabled: false
"""
# What earlier versions wrote (SQLite storage under the home): replaced by LOCAL_DAGSTER_YAML when found as is.
_FORMER_DEFAULTS = ("telemetry:\n  enabled: false\nnux:\n  enabled: false\n",)

# Pooled storage connections of the CLI's instance (seconds / extra connections beyond the one kept open).
_POOL_RECYCLE_S = 3600
_POOL_MAX_OVERFLOW = 4

_instances: dict[tuple[str, str], dg.DagsterInstance] = {}
_instances_lock = threading.Lock()


def dagster_home() -> Path:
    """DAGSTER_HOME if set, else ``<data_dir>/dagster``, with its ``dagster.yaml``; when that file keeps the storage
    in the database named by ``COINFRS_DAGSTER_STORAGE_URL``, the variable is set and the database exists."""
    configured = os.environ.get("DAGSTER_HOME")
    home = Path(configured) if configured else get_settings().data_dir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text(encoding="utf-8") in _FORMER_DEFAULTS:
        config.write_text(LOCAL_DAGSTER_YAML, encoding="utf-8")
    if DAGSTER_STORAGE_ENV in config.read_text(encoding="utf-8"):
        os.environ[DAGSTER_STORAGE_ENV] = storage_url()
    return home


def storage_url() -> str:
    """The Dagster storage's database on the warehouse's server (created when missing), for dagster-postgres."""
    warehouse = database_url()
    url = dagster_database_url(warehouse)
    ensure_database(url, via=warehouse)
    return url


def cli_instance() -> dg.DagsterInstance:
    """The instance of ``dagster_home()``, one per home and storage in a process, its storage connections pooled."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    home = str(dagster_home())
    key = (home, os.environ.get(DAGSTER_STORAGE_ENV, ""))
    with _instances_lock:
        instance = _instances.get(key)
        if instance is None:
            instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(home))
            instance.optimize_for_webserver(statement_timeout=0, pool_recycle=_POOL_RECYCLE_S,
                                            max_overflow=_POOL_MAX_OVERFLOW)
            _instances[key] = instance
        return instance


def dispose_cli_instances() -> None:
    """Close the cached instances and their pooled connections (before their database is dropped)."""
    with _instances_lock:
        for instance in _instances.values():
            instance.dispose()
        _instances.clear()
