"""Apply the Alembic migrations (``coinfrs db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from warehouse.db import get_owner_engine

_INI = Path(__file__).with_name("alembic.ini")


class MigrationRefused(RuntimeError):
    """A migration found data it cannot change safely; the message says what to fix. Nothing was changed."""


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(_INI))
    config.set_main_option("script_location", str(_INI.parent / "migrations"))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate as the schema owner (the URL's user): the application's role may not change the schema."""
    engine = get_owner_engine(url)
    with engine.begin() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_owner_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
