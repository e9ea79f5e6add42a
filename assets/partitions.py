"""The close's partitions: day x entity (one partition = one entity's close of one day).

Two dimensions (Dagster orders them by name, so a key reads ``2026-01-05|acme``):

- ``date``: daily from 2009-01-03, the Bitcoin genesis block, so history of any age closes without a setting;
- ``entity``: dynamic, one partition per entity NAME, added from the Dagster side when an entity is closed,
  scheduled or imported (``ensure_entity_partitions``; the ``entity_partitions_sensor`` adds every entity).

A run covers a key range: the days from its first to its last key, for the entities between them (in practice
one entity: the CLI, the schedule and the sensors ask one run per entity). A single-run backfill of five years of
one entity is one run (``BackfillPolicy.single_run``), with per-entity, per-day status in the UI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG

FIRST_DAY = date(2009, 1, 3)  # the Bitcoin genesis block: no crypto record is older
DATE_DIMENSION = "date"
ENTITY_DIMENSION = "entity"
ENTITY_PARTITIONS = "entity"  # the dynamic partitions' name in the Dagster instance

daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY.isoformat(), timezone="UTC")
entity_partitions = dg.DynamicPartitionsDefinition(name=ENTITY_PARTITIONS)
close_partitions = dg.MultiPartitionsDefinition({DATE_DIMENSION: daily_partitions, ENTITY_DIMENSION: entity_partitions})

# what a dynamic partition key cannot hold (Dagster's own list, plus the multi-partition and key-list separators)
_FORBIDDEN = ("|", ",", "...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


def partition_name_problem(name: str) -> str | None:
    """Why an entity NAME cannot be a Dagster partition key, or None."""
    bad = [s for s in _FORBIDDEN if s in name]
    if not bad:
        return None
    shown = ", ".join(repr(s) for s in bad)
    return f"the entity name {name!r} contains {shown}, which a Dagster partition key cannot hold: rename the entity"


def partition_key(entity_name: str, day: date) -> str:
    return str(dg.MultiPartitionKey({DATE_DIMENSION: day.isoformat(), ENTITY_DIMENSION: entity_name}))


def range_tags(entity_name: str, start: date, end: date) -> dict[str, str]:
    """The run tags of a single run over [start, end] of one entity (a single-run backfill's partition range)."""
    return {ASSET_PARTITION_RANGE_START_TAG: partition_key(entity_name, start),
            ASSET_PARTITION_RANGE_END_TAG: partition_key(entity_name, end)}


def split_key(key: str) -> tuple[date, str]:
    """``2026-01-05|acme`` -> (2026-01-05, "acme")."""
    day, _, entity = str(key).partition("|")
    return date.fromisoformat(day), entity


@dataclass(frozen=True)
class RunScope:
    """What a close run covers, read from its partition tags: the entity names and the days."""

    entities: tuple[str, ...]
    start: date
    end: date


def run_scope(tags: Mapping[str, str], instance: dg.DagsterInstance | None = None) -> RunScope | None:
    """The scope of a run from its partition tags (a range, or one partition); None when it has none or old-style
    (date-only) ones. Several entities (a range from one entity to another) need ``instance`` for their order."""
    first = tags.get(ASSET_PARTITION_RANGE_START_TAG) or tags.get(PARTITION_NAME_TAG)
    last = tags.get(ASSET_PARTITION_RANGE_END_TAG) or first
    if not first or not last or "|" not in first or "|" not in last:
        return None
    try:
        (start, first_entity), (end, last_entity) = split_key(first), split_key(last)
    except ValueError:
        return None
    if first_entity == last_entity:
        return RunScope((first_entity,), start, end)
    names = instance.get_dynamic_partitions(ENTITY_PARTITIONS) if instance is not None else []
    if first_entity in names and last_entity in names:
        lo, hi = sorted((names.index(first_entity), names.index(last_entity)))
        return RunScope(tuple(names[lo:hi + 1]), start, end)
    return RunScope((first_entity, last_entity), start, end)


def window_of(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """First and last close day of the run (one day, or a single-run backfill's range)."""
    days = [split_key(k)[0] for k in context.partition_keys]
    return min(days), max(days)


def entity_names_of(context: dg.AssetExecutionContext) -> list[str]:
    """The entity names of the run's partitions, in first-seen order."""
    return list(dict.fromkeys(split_key(k)[1] for k in context.partition_keys))


def ensure_entity_partitions(instance: dg.DagsterInstance, names: Iterable[str]) -> list[str]:
    """Add the entity partitions the instance does not have yet; returns the names added."""
    wanted = [n for n in dict.fromkeys(names) if partition_name_problem(n) is None]
    if not wanted:
        return []
    known = set(instance.get_dynamic_partitions(ENTITY_PARTITIONS))
    missing = [n for n in wanted if n not in known]
    if missing:
        instance.add_dynamic_partitions(ENTITY_PARTITIONS, missing)
    return missing
