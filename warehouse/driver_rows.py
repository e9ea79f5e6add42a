"""The rows of a hot read query straight from the driver (psycopg), for the API's pages.

SQLAlchemy builds a result's metadata from the cursor's description on every execution of a textual statement
(``sa.text``): for a page of 100 positions (16 columns) that was half the client's CPU of the query, 0.22 of 0.42 ms,
more than psycopg's own fetch. ``driver_rows`` runs the same SQL, compiled once per distinct text by SQLAlchemy's
psycopg dialect (its ``:name`` parameters and ``%`` escaping, exactly as ``conn.execute`` would send it), on the
connection's psycopg connection, in the connection's transaction, and returns plain tuples in column order.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect


@lru_cache(maxsize=512)
def _driver_sql(sql: str, dialect: Dialect) -> str:
    return sa.text(sql).compile(dialect=dialect).string


def driver_rows(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every row of ``sql`` (text with ``:name`` parameters) with ``params``, as tuples."""
    with conn.connection.driver_connection.cursor() as cursor:
        cursor.execute(_driver_sql(sql, conn.dialect), params)
        return cursor.fetchall()
