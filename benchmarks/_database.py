"""The throw-away PostgreSQL database of a benchmark (imported by the scripts beside it, once the project root is on
``sys.path``)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from orchestration.instance import dispose_cli_instances
from warehouse.db import DAGSTER_DATABASE_SUFFIX, _engine_for, owner_database_url, redact
from warehouse.migrate import upgrade
from warehouse.settings import get_settings


@contextmanager
def bench_database(prefix: str = "", *, keep: bool = False, reuse: str | None = None, set_env: bool = True,
                   announce: str | None = "benchmark database {url}") -> Iterator[str]:
    """Create ``coinfrs_bench_<prefix>_<random>`` (``coinfrs_bench_<random>`` without a prefix) on DATABASE_URL's
    server (else the embedded one), migrate it and yield its URL; drop it at the end unless ``keep``.

    ``reuse`` names an existing database to use as it is: not created, migrated or dropped. ``set_env`` points
    DATABASE_URL (and the cached settings) at the database; ``announce`` is printed once it exists, ``{url}``
    replaced by its redacted URL (None: nothing printed)."""
    server = owner_database_url()
    name = reuse or "_".join(part for part in ("coinfrs_bench", prefix, secrets.token_hex(4)) if part)
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        if not reuse:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        if set_env:
            os.environ["DATABASE_URL"] = url
            get_settings.cache_clear()
        if announce is not None:
            print(announce.replace("{url}", redact(url)), flush=True)
        try:
            if not reuse:
                upgrade(url)
            yield url
        finally:
            _engine_for.cache_clear()  # forget the cached engines of this database
            if not keep and not reuse:
                dispose_cli_instances()
                with admin.connect() as conn:  # and the CLI's Dagster storage beside it (orchestration/instance.py)
                    for database in (name, f"{name}{DAGSTER_DATABASE_SUFFIX}"):
                        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        admin.dispose()
