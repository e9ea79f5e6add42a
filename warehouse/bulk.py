"""Bulk loads through PostgreSQL COPY (psycopg 3), inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from itertools import islice
from queue import Queue
from types import TracebackType
from typing import Any

from psycopg.copy import QueuedLibpqWriter

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


_COPY_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: object) -> str:
    """One field in COPY's text format: None as ``\\N``, anything else as ``str(value)`` with backslash, tab,
    newline and carriage return escaped."""
    return "\\N" if value is None else str(value).translate(_COPY_TEXT_ESCAPES)


class _BoundedQueuedWriter(QueuedLibpqWriter):
    """psycopg's queued COPY writer (a thread sends while the caller goes on producing lines) with a short queue:
    psycopg's holds up to 1,024 buffers of up to 128 KB, so a producer faster than the server could queue 128 MB.
    Measured on a 50 MB ledger import (benchmarks/bench_import.py, docs/csv-formats.md): the file is read and checked
    while the server inserts, instead of in turns with it."""

    QUEUE_BUFFERS = 32  # at most 4 MB waiting

    def __init__(self, cursor: Any) -> None:
        super().__init__(cursor)
        if not isinstance(getattr(self, "_queue", None), Queue):  # psycopg (pinned) keeps its queue there
            raise RuntimeError("psycopg's QueuedLibpqWriter has no _queue: check the psycopg pin")
        self._queue = Queue(maxsize=self.QUEUE_BUFFERS)


class CopyLines:
    """COPY lines already in COPY's text format (fields escaped with ``copy_text``, tab-separated, each line ending
    in ``\\n``) into ``table``, sent in batches of ``BATCH_LINES``: a stream of any length in flat memory, without
    psycopg's per-value adaptation.

    ``segment_rows`` ends the COPY after that many lines and starts another, each segment four times the last (up
    to ``MAX_SEGMENT_ROWS``): the server reports an error (a unique violation, say) only when a COPY ends, so a
    writer that would rather stop early than send the whole stream segments it. Use as a context manager; the
    last COPY ends (and its error, if any, is raised) when the block does."""

    BATCH_LINES = 2_000
    MAX_SEGMENT_ROWS = 131_072

    def __init__(self, conn: Connection, table: str, columns: Sequence[str], *, segment_rows: int | None = None) -> None:
        self._conn = conn
        self._statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        self._segment_rows = segment_rows
        self._batch: list[str] = []
        self._cursor: Any = None
        self._segment: ExitStack | None = None  # the COPY under way
        self._copy: Any = None
        self._in_segment = 0

    def __enter__(self) -> "CopyLines":
        self._cursor = self._conn.connection.driver_connection.cursor()
        return self

    def write(self, line: str) -> None:
        self._batch.append(line)
        if len(self._batch) >= self.BATCH_LINES:
            self._send()

    def write_lines(self, lines: Iterable[str]) -> None:
        """``write`` each of ``lines`` (an iterator is consumed as it goes, a batch at a time)."""
        lines = iter(lines)
        while batch := list(islice(lines, self.BATCH_LINES - len(self._batch))):
            self._batch.extend(batch)
            if len(self._batch) >= self.BATCH_LINES:
                self._send()

    def _send(self) -> None:
        if not self._batch:
            return
        if self._segment is None:
            self._segment = ExitStack()
            self._copy = self._segment.enter_context(
                self._cursor.copy(self._statement, writer=_BoundedQueuedWriter(self._cursor)))
        self._copy.write("".join(self._batch))
        self._in_segment += len(self._batch)
        self._batch.clear()
        if self._segment_rows is not None and self._in_segment >= self._segment_rows:
            self._end(None)
            self._segment_rows = min(self._segment_rows * 4, self.MAX_SEGMENT_ROWS)

    def _end(self, exc: BaseException | None) -> None:
        segment, self._segment, self._copy, self._in_segment = self._segment, None, None, 0
        if segment is not None:
            segment.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc is None:
                self._send()
            self._end(exc)
        finally:
            self._batch.clear()
            self._cursor.close()
