"""Alembic environment: migrates the database ``warehouse.db`` points at (or the URL given in config)."""

import sqlalchemy as sa
from alembic import context

from warehouse.db import get_owner_engine
from warehouse.schema import metadata

config = context.config

_TRACK_WRITES = "coinfrs_track_writes(text[])"
"""After any migration: every table of the warehouse (``warehouse.schema``) gets the trigger of the API's data version
(migration 0031), so a table created by a later migration empties the API's response cache when written like the
others; tables that are not the warehouse's (Dagster's storage, if it shares the schema) never get it. A no-op
below 0031."""


def _migrate(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
        if connection.execute(sa.text(f"SELECT to_regprocedure('{_TRACK_WRITES}')")).scalar() is not None:
            connection.execute(sa.text("SELECT coinfrs_track_writes(:tables)"),
                               {"tables": [table.name for table in metadata.sorted_tables]})


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or None
    with get_owner_engine(url).connect() as connection:  # the schema owner migrates
        _migrate(connection)


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `coinfrs db upgrade`")
run_migrations_online()
