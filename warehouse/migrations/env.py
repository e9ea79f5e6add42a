"""Alembic environment: migrates the database ``warehouse.db`` points at (or the URL given in config)."""

from alembic import context

from warehouse.db import get_owner_engine
from warehouse.schema import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or None
    with get_owner_engine(url).connect() as connection:  # the schema owner migrates
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `coinfrs db upgrade`")
run_migrations_online()
