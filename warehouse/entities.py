"""Entities: the companies or funds whose books are closed. Named by name or by id everywhere.

Names match case-insensitively (``Acme`` and ``acme`` are one entity; the database's unique index on
``lower(name)`` enforces it) and keep the spelling they were created with. A name that matches nothing is refused
with the closest names ("did you mean"). An archived entity (``archived_at`` set) stays readable but is not listed
by default, not closed by the schedule, and refuses closes and imports (``require_active``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from warehouse.schema import entities

FORBIDDEN_NAME_CHARACTERS = ",/\\|"
"""Not in a new name: a comma separates entities in run tags, a slash cannot be an inbox directory's name, and a
Dagster partition key (the entity dimension, assets/partitions.py) holds no ``|`` (nor ``...``, refused below)."""


class EntityNotFound(LookupError):
    def __init__(self, ref: str | int, suggestions: Sequence[str] = ()) -> None:
        message = f"no entity named or numbered {ref!r}"
        if suggestions:
            message += f" (did you mean {' or '.join(repr(s) for s in suggestions)}?)"
        super().__init__(message)
        self.ref = ref
        self.suggestions = tuple(suggestions)


class EntityArchived(ValueError):
    """The entity is archived: it is not closed or imported into (its data stays readable)."""

    def __init__(self, entity: "Entity") -> None:
        since = entity.archived_at.date().isoformat() if entity.archived_at else "?"
        super().__init__(f"entity {entity.name!r} is archived (since {since}): it is not closed or imported into; "
                         f"`coinfrs entity unarchive --entity {entity.name}` makes it active again")
        self.entity = entity


class EntityNameError(ValueError):
    """A name that cannot be given: taken (case-insensitively) by another entity, or not a valid name."""


@dataclass(frozen=True)
class Entity:
    id: int
    name: str
    timezone: str
    reporting_currency: str = "USD"
    holding_rule: str = "us"  # transforms.cost_basis.HOLDING_RULES
    archived_at: datetime | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


def _row_to_entity(row: sa.Row) -> Entity:
    return Entity(id=row.id, name=row.name, timezone=row.timezone,
                  reporting_currency=getattr(row, "reporting_currency", None) or "USD",
                  holding_rule=getattr(row, "holding_rule", None) or "us",
                  archived_at=getattr(row, "archived_at", None))


def suggest_names(ref: str, names: Iterable[str], limit: int = 3) -> list[str]:
    """The names closest to ``ref`` (case-insensitively), best first: what a typo most likely meant."""
    by_folded: dict[str, str] = {}
    for name in names:
        by_folded.setdefault(name.casefold(), name)
    close = difflib.get_close_matches(str(ref).strip().casefold(), list(by_folded), n=limit, cutoff=0.6)
    return [by_folded[c] for c in close]


def find_entity(conn: Connection, ref: str | int) -> Entity | None:
    """An entity by name (case-insensitively), or by id when ``ref`` is a number that is not also a name."""
    if isinstance(ref, int) and not isinstance(ref, bool):  # an id from our own tables: one query
        row = conn.execute(sa.select(entities).where(entities.c.id == ref)).first()
        return _row_to_entity(row) if row else None
    text = str(ref).strip()
    row = conn.execute(sa.select(entities).where(sa.func.lower(entities.c.name) == sa.func.lower(text))).first()
    if row is None and text.isdigit():
        row = conn.execute(sa.select(entities).where(entities.c.id == int(text))).first()
    return _row_to_entity(row) if row else None


def resolve_entity(conn: Connection, ref: str | int) -> Entity:
    """``find_entity``, or ``EntityNotFound`` naming the closest existing names."""
    entity = find_entity(conn, ref)
    if entity is None:
        names = conn.execute(sa.select(entities.c.name)).scalars().all() if isinstance(ref, str) else []
        raise EntityNotFound(ref, suggest_names(ref, names))
    return entity


def require_active(entity: Entity) -> Entity:
    """The entity, if it is not archived; else ``EntityArchived``."""
    if entity.archived:
        raise EntityArchived(entity)
    return entity


def resolve_active_entity(conn: Connection, ref: str | int) -> Entity:
    """An entity to close or import into: it exists (``EntityNotFound``) and is not archived (``EntityArchived``)."""
    return require_active(resolve_entity(conn, ref))


def validate_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (use an IANA name such as 'UTC' or 'Europe/Zurich')") from None
    return name


def validate_entity_name(name: str) -> str:
    """A new name, stripped: non-empty, not a bare number (those name ids), no comma, slash, backslash, bar, "..."
    or control character."""
    text = name.strip()
    if not text or text.isdigit():
        raise EntityNameError(f"an entity name must be non-empty and not a bare number: {name!r}")
    bad = sorted({c for c in text if c in FORBIDDEN_NAME_CHARACTERS or not c.isprintable()})
    if bad:
        raise EntityNameError(f"an entity name may not contain {', '.join(repr(c) for c in bad)}: {name!r}")
    if "..." in text:
        raise EntityNameError(f"an entity name may not contain '...' (a Dagster partition range): {name!r}")
    if len(text) > 200:
        raise EntityNameError(f"an entity name has at most 200 characters, not {len(text)}")
    return text


def _taken(conn: Connection, name: str, other_than: int | None = None) -> EntityNameError | None:
    query = sa.select(entities.c.id, entities.c.name).where(sa.func.lower(entities.c.name) == sa.func.lower(name))
    if other_than is not None:
        query = query.where(entities.c.id != other_than)
    row = conn.execute(query).first()
    if row is None:
        return None
    return EntityNameError(f"the name {name!r} is taken by entity {row.name!r} (id {row.id}); names are compared "
                           "without regard to case")


def create_entity(conn: Connection, name: str, timezone: str = "UTC") -> Entity:
    """A new entity; ``EntityNameError`` when the name is invalid or taken (also by a concurrent create)."""
    text = validate_entity_name(name)
    validate_timezone(timezone)
    row = conn.execute(pg_insert(entities).values(name=text, timezone=timezone).on_conflict_do_nothing()
                       .returning(*entities.c)).first()
    if row is None:  # a unique index (name, or lower(name)) already holds it
        raise _taken(conn, text) or EntityNameError(f"the name {text!r} is taken")
    return _row_to_entity(row)


def get_or_create_entity(conn: Connection, name: str, timezone: str = "UTC") -> Entity:
    """The entity called ``name`` (case-insensitively), created when there is none. For callers that mean to create
    (``--create``, the demo, tests); everything else resolves (``resolve_entity``) so a typo never makes an entity."""
    existing = find_entity(conn, name)
    if existing is not None:
        return existing
    text = validate_entity_name(name)
    validate_timezone(timezone)
    conn.execute(pg_insert(entities).values(name=text, timezone=timezone).on_conflict_do_nothing())
    return resolve_entity(conn, text)  # ours, or the one a concurrent create made first


def entity_to_write(conn: Connection, ref: str, *, create: bool = False, timezone: str = "UTC") -> Entity:
    """The entity an import or a new source writes to: an existing, active one; with ``create``, a missing one is
    created (``EntityNotFound`` / ``EntityArchived`` / ``EntityNameError`` otherwise)."""
    entity = get_or_create_entity(conn, ref, timezone) if create else resolve_entity(conn, ref)
    return require_active(entity)


def rename_entity(conn: Connection, ref: str | int, new_name: str) -> Entity:
    """Rename an entity (its id, data and API keys stay); a change of case alone is allowed."""
    entity = resolve_entity(conn, ref)
    text = validate_entity_name(new_name)
    taken = _taken(conn, text, other_than=entity.id)
    if taken is not None:
        raise taken
    try:
        with conn.begin_nested():  # a concurrent rename or create to the same name loses cleanly
            row = conn.execute(sa.update(entities).where(entities.c.id == entity.id).values(name=text)
                               .returning(*entities.c)).one()
    except sa.exc.IntegrityError:
        raise _taken(conn, text, other_than=entity.id) or EntityNameError(f"the name {text!r} is taken") from None
    return _row_to_entity(row)


def set_entity_archived(conn: Connection, ref: str | int, archived: bool) -> Entity:
    """Archive (or make active again) an entity. Idempotent: archiving an archived entity keeps its first date."""
    entity = resolve_entity(conn, ref)
    value = sa.func.coalesce(entities.c.archived_at, sa.func.now()) if archived else None
    row = conn.execute(sa.update(entities).where(entities.c.id == entity.id).values(archived_at=value)
                       .returning(*entities.c)).one()
    return _row_to_entity(row)


def archive_entity(conn: Connection, ref: str | int) -> Entity:
    return set_entity_archived(conn, ref, True)


def unarchive_entity(conn: Connection, ref: str | int) -> Entity:
    return set_entity_archived(conn, ref, False)


def list_entities(conn: Connection, include_archived: bool = False) -> list[Entity]:
    """Entities by id: the active ones (what the schedule closes), or every one with ``include_archived``."""
    query = sa.select(entities).order_by(entities.c.id)
    if not include_archived:
        query = query.where(entities.c.archived_at.is_(None))
    return [_row_to_entity(r) for r in conn.execute(query)]


def entity_summaries(conn: Connection, include_archived: bool = False) -> list[dict]:
    """``list_entities`` as JSON-ready rows, with each entity's latest close day."""
    latest = dict(conn.execute(sa.text("SELECT entity_id, max(date) FROM closes GROUP BY entity_id")).all())
    rows = []
    for e in list_entities(conn, include_archived):
        day = latest.get(e.id)
        rows.append({"id": e.id, "name": e.name, "timezone": e.timezone, "reporting_currency": e.reporting_currency,
                     "holding_rule": e.holding_rule, "latest_close": day.isoformat() if day else None,
                     "archived": e.archived, "archived_at": e.archived_at.isoformat() if e.archived_at else None})
    return rows
