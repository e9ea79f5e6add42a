"""The error a mapper raises for a staged record it cannot read (errors as values: transforms/mappers.py turns it into
a ``MappingFailure`` and the canonical build quarantines the record). Its own module so every mapper can import it."""

from __future__ import annotations


class RecordError(ValueError):
    """A staged record its mapper cannot read; the message names the record and the field (``field`` when known).
    Each connector's own error (EvmRecordError, BinanceRecordError, ...) is one of these."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
