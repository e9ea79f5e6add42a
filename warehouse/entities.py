"""Entities: the companies or funds whose books are closed. Named by name or by id everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warehouse.schema import entities


class EntityNotFound(LookupError):
    def __init__(self, ref: str | int) -> None:
        super().__init__(f"no entity named or numbered {ref!r}")
        self.ref = ref


@dataclass(frozen=True)
class Entity:
    id: int
    name: str
    timezone: str
    reporting_currency: str = "USD"
    holding_rule: str = "us"  # transforms.cost_basis.HOLDING_RULES

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _row_to_entity(row: sa.Row) -> Entity:
    return Entity(id=row.id, name=row.name, timezone=row.timezone,
                  reporting_currency=getattr(row, "reporting_currency", None) or "USD",
                  holding_rule=getattr(row, "holding_rule", None) or "us")


def find_entity(conn: Connection, ref: str | int) -> Entity | None:
    """An entity by name, or by id when ``ref`` is a number that is not also a name."""
    if isinstance(ref, int) and not isinstance(ref, bool):  # an id from our own tables: one query
        row = conn.execute(sa.select(entities).where(entities.c.id == ref)).first()
        return _row_to_entity(row) if row else None
    text = str(ref).strip()
    row = conn.execute(sa.select(entities).where(entities.c.name == text)).first()
    if row is None and text.isdigit():
        row = conn.execute(sa.select(entities).where(entities.c.id == int(text))).first()
    return _row_to_entity(row) if row else None


def resolve_entity(conn: Connection, ref: str | int) -> Entity:
    entity = find_entity(conn, ref)
    if entity is None:
        raise EntityNotFound(ref)
    return entity


def validate_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (use an IANA name such as 'UTC' or 'Europe/Zurich')") from None
    return name


def get_or_create_entity(conn: Connection, name: str, timezone: str = "UTC") -> Entity:
    """The entity called ``name``; created on first use (the first import names it)."""
    existing = find_entity(conn, name)
    if existing is not None:
        return existing
    name = name.strip()
    if not name or name.isdigit():
        raise ValueError(f"an entity name must be non-empty and not a bare number: {name!r}")
    validate_timezone(timezone)
    conn.execute(
        sa.dialects.postgresql.insert(entities)
        .values(name=name, timezone=timezone)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return resolve_entity(conn, name)


def list_entities(conn: Connection) -> list[Entity]:
    return [_row_to_entity(r) for r in conn.execute(sa.select(entities).order_by(entities.c.id))]
