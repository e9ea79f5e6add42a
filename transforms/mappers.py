"""Which pure mapper turns the staged records of each (source, stream) into canonical legs.

A mapper takes one staged record and returns its legs (``LegDraft``), at most ten per record, leg
index 0..9 (a leg's id is ``raw_record_id * 10 + leg_index``, stable across rebuilds). A mapper never
touches the database: it reads the record's payload (exact strings from the source) and its
``account`` column. A stream that carries no legs (for example balances) is simply not registered.

A source package (``ingestion/<source>/mapping.py``, listed in ``SOURCE_PACKAGES``) registers its mappers at import
time with ``register_mapper``; the canonical build
(transforms/canonical.py) rebuilds legs from every registered (source, stream). The staging key
``source_raw_id`` must be unique per (entity, source, stream): the latest staged version of each wins.

Errors are values: a mapper raises ``RecordError`` (or any exception) for a record it cannot read, and
``try_map_record`` turns that into a ``MappingFailure`` naming the record, the field and the error, so the canonical
build quarantines that one record (transforms/quarantine.py) and books the rest; no single record aborts a build.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from transforms.events import check_kind
from transforms.ledger_mapping import LegDraft, map_ledger_record
from transforms.record_errors import RecordError

__all__ = ["CONNECTOR_MAPPING_MODULES", "MappingFailure", "RecordError", "SOURCE_PACKAGES", "StagedRecord", "field_of",
           "map_record", "register_mapper", "registered_streams", "try_map_record"]

MAX_LEGS_PER_RECORD = 10


@dataclass(frozen=True)
class StagedRecord:
    """What a mapper sees of one ``raw_records`` row."""

    id: int
    source: str
    stream: str
    account: str
    source_raw_id: str
    occurred_at: datetime | None
    payload: Any


@dataclass(frozen=True)
class MappingFailure:
    """Why one staged record has no legs: the error as a value (quarantined by the canonical build)."""

    record: StagedRecord
    error: str
    field: str | None


_FIELD_IN_MESSAGE = re.compile(r"""field (?:'([^']+)'|"([^"]+)")""")


def field_of(error: BaseException) -> str | None:
    """The field an error names: its ``field``, else the one its message quotes (``field 'x'``), else a missing key."""
    named = getattr(error, "field", None)
    if named:
        return str(named)
    found = _FIELD_IN_MESSAGE.search(str(error))
    if found:
        return found.group(1) or found.group(2)
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return None


Mapper = Callable[[StagedRecord], list[LegDraft]]
_MAPPERS: dict[tuple[str, str], Mapper] = {}


def register_mapper(source: str, stream: str, mapper: Mapper) -> None:
    """Make ``mapper`` the one for (source, stream); registering the same pair twice with another mapper is an error."""
    existing = _MAPPERS.get((source, stream))
    if existing is not None and existing is not mapper:
        raise ValueError(f"a mapper for source {source!r}, stream {stream!r} is already registered")
    _MAPPERS[(source, stream)] = mapper


def registered_streams() -> list[tuple[str, str]]:
    """Every (source, stream) whose records become legs, sorted."""
    _load_connectors()
    return sorted(_MAPPERS)


def map_record(record: StagedRecord) -> list[LegDraft]:
    """The legs of one staged record, checked against the leg-index contract."""
    _load_connectors()
    mapper = _MAPPERS.get((record.source, record.stream))
    if mapper is None:
        raise KeyError(f"no mapper for source {record.source!r}, stream {record.stream!r} (raw record {record.id})")
    legs = mapper(record)
    for leg in legs:
        if not 0 <= leg.leg_index < MAX_LEGS_PER_RECORD:
            raise ValueError(f"raw record {record.id} ({record.source}/{record.stream}): leg index {leg.leg_index} "
                             f"outside 0..{MAX_LEGS_PER_RECORD - 1}")
    for leg in legs:
        check_kind(leg.kind, f"raw record {record.id} ({record.source}/{record.stream}) leg {leg.leg_index}")
    if len({leg.leg_index for leg in legs}) != len(legs):
        raise ValueError(f"raw record {record.id} ({record.source}/{record.stream}): two legs share a leg index")
    return legs


def try_map_record(record: StagedRecord) -> list[LegDraft] | MappingFailure:
    """``map_record``, with any error of the mapper (or of the leg contract) returned as a ``MappingFailure``.

    Every exception a mapper raises is caught here, not only ``RecordError``: a mapper that fails on a record it did
    not expect (a ``KeyError``, a ``TypeError`` on a changed field type) is a record to quarantine and a mapper to
    fix, never a reason to stop the entity's close."""
    try:
        return map_record(record)
    except Exception as error:  # noqa: BLE001 - errors as values: the failure is stored, never swallowed
        message = str(error) or type(error).__name__
        if f"raw record {record.id}" not in message and record.source_raw_id not in message:
            kind = "" if isinstance(error, RecordError) else f"{type(error).__name__}: "
            message = f"{record.source}/{record.stream} record {record.source_raw_id!r} (raw record {record.id}): {kind}{message}"
        return MappingFailure(record, message[:2000], field_of(error))


def _map_csv_ledger(record: StagedRecord) -> list[LegDraft]:
    return map_ledger_record(record.payload)


register_mapper("csv", "ledger", _map_csv_ledger)

# The source packages: ``ingestion/<name>/``, each with the same parts: ``client`` (talks to the service), ``sync``
# (writes staging) and ``mapping`` (pure: staged record -> legs; importing it registers its mappers). Only the mapping
# modules are imported here, so the canonical build knows every source without importing a network client.
# tests/unit/test_source_contract.py holds every package to that contract (docs/sources.md, "Adding a source").
SOURCE_PACKAGES: tuple[str, ...] = ("bitcoin", "evm", "solana", "binance", "ccxt", "fireblocks")
# Mappers of what is not read from a service: exchange exports (files) and manual adjustments.
FILE_MAPPING_MODULES: tuple[str, ...] = ("transforms.exchange_export_mapping", "transforms.adjustments")
CONNECTOR_MAPPING_MODULES: tuple[str, ...] = (*(f"ingestion.{name}.mapping" for name in SOURCE_PACKAGES),
                                              *FILE_MAPPING_MODULES)
_loaded = False


def _load_connectors() -> None:
    global _loaded
    if _loaded:
        return
    import importlib

    for module in CONNECTOR_MAPPING_MODULES:
        importlib.import_module(module)
    _loaded = True
