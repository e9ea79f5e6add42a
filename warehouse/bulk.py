"""Bulk loads through PostgreSQL COPY (psycopg 3), inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy.engine import Connection


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """COPY ``rows`` into ``table`` (a trusted identifier of ours, never user input)."""
    with conn.connection.driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


@contextmanager
def copy_writer(conn: Connection, table: str, columns: Sequence[str]) -> Iterator[Callable[[Sequence[object]], None]]:
    """COPY into ``table`` row by row as rows are produced (a stream of any length in flat memory): yields
    ``write(row)``; the COPY ends when the block does."""
    with conn.connection.driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            yield copy.write_row
