"""The inbox: CSV files dropped into ``<inbox>/<entity>/<ledger|balances>/`` are imported.

Each file is imported in its own transaction; it then moves to ``processed/`` beside it, or to
``failed/`` with a ``.errors.txt`` that names every bad line and field (nothing of it lands).
The directory names an existing, active entity (case-insensitively): a file under an unknown name (a mistyped
directory) or an archived entity goes to ``failed/`` saying so, with the closest names; only when
``COINFRS_INBOX_CREATE_ENTITIES`` is true does an unknown name create its entity.
One file never stops the others: ``process_inbox_file`` returns every failure as a value (a file
refused, one that vanished before it was read, a fault of ours); only when the warehouse cannot be
reached is the file left where it is, for the next tick.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestion.csv_files import CsvFile, CsvImportError, ImportResult, import_csv
from warehouse.calendar import close_date_of
from warehouse.entities import EntityArchived, EntityNameError, EntityNotFound, entity_to_write

KINDS = ("ledger", "balances")


@dataclass(frozen=True)
class InboxFile:
    path: Path
    entity: str
    kind: str


@dataclass(frozen=True)
class InboxOutcome:
    file: InboxFile
    result: ImportResult | None
    error: str | None
    entity_name: str | None
    first_day: date | None
    last_day: date | None


def scan_inbox(inbox: Path) -> list[InboxFile]:
    """CSV files waiting in the inbox, oldest first."""
    found = []
    if not inbox.is_dir():
        return found
    for entity_dir in sorted(p for p in inbox.iterdir() if p.is_dir()):
        for kind in KINDS:
            folder = entity_dir / kind
            if folder.is_dir():
                found.extend(InboxFile(p, entity_dir.name, kind) for p in folder.glob("*.csv") if p.is_file())
    return sorted(found, key=lambda f: (f.path.stat().st_mtime, str(f.path)))


def _move(file: InboxFile, folder: str) -> Path:
    target_dir = file.path.parent / folder
    target_dir.mkdir(exist_ok=True)
    target = target_dir / file.path.name
    if target.exists():
        target = target_dir / f"{file.path.stem}.{int(file.path.stat().st_mtime)}{file.path.suffix}"
    shutil.move(str(file.path), target)
    return target


def _fail(file: InboxFile, message: str) -> InboxOutcome:
    """Move the file to ``failed/`` with its errors beside it; the outcome says what happened."""
    try:
        target = _move(file, "failed")
        target.with_suffix(target.suffix + ".errors.txt").write_text(message + "\n", encoding="utf-8")
    except OSError as exc:
        message += f"\n(could not move it to failed/: {exc.strerror or type(exc).__name__})"
    return InboxOutcome(file, None, message, None, None, None)


def _reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError:
        return False


def process_inbox_file(engine: Engine, file: InboxFile, *, create_entities: bool = False) -> InboxOutcome:
    """Import one inbox file (all or nothing) and move it out of the way. Never raises. The file's directory names
    its entity; an unknown name is refused unless ``create_entities`` (``COINFRS_INBOX_CREATE_ENTITIES``)."""
    try:
        with engine.begin() as conn:
            entity = entity_to_write(conn, file.entity, create=create_entities)
            result = import_csv(conn, entity.id, file.kind, CsvFile.from_path(file.path))
    except EntityNotFound as exc:
        return _fail(file, f"{file.path.name}: not imported: {exc}; create the entity first (`coinfrs entity create "
                           f"--entity {file.entity}`, or set COINFRS_INBOX_CREATE_ENTITIES=true to let the inbox create "
                           "entities), or move the file to the right entity's directory")
    except (EntityArchived, EntityNameError) as exc:
        return _fail(file, f"{file.path.name}: not imported: {exc}")
    except (CsvImportError, ValueError, UnicodeDecodeError) as exc:
        return _fail(file, str(exc))
    except FileNotFoundError:
        return InboxOutcome(file, None, f"{file.path.name}: gone before it was read (moved or deleted meanwhile)",
                            None, None, None)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if not _reachable(engine):  # the warehouse is down: the file waits for the next tick
            return InboxOutcome(file, None, f"{file.path.name}: left in the inbox, the warehouse cannot be reached "
                                            f"({type(exc.orig or exc).__name__})", None, None, None)
        return _fail(file, f"{file.path.name}: not imported: the database refused it: "
                           f"{str(exc.orig or exc).splitlines()[0][:300]}")
    except Exception as exc:  # noqa: BLE001 - one file's fault never stops the other files or loses their closes
        return _fail(file, f"{file.path.name}: not imported: unexpected {type(exc).__name__}: {str(exc)[:300]}")
    try:
        _move(file, "processed")
    except OSError:
        pass  # staged and committed; a file left behind is imported again as a no-op
    tz = entity.tz
    first = close_date_of(result.first_day, tz) if result.first_day else None
    last = close_date_of(result.last_day, tz) if result.last_day else None
    return InboxOutcome(file, result, None, entity.name, first, last)
