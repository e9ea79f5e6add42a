"""Manual price CSV: ``asset, timestamp, price_usd[, source_note]``. Manual prices override every other source.

``timestamp`` is either a date (``2026-01-31``: the close of that day in the entity's timezone, resolution
'day') or an ISO 8601 instant with an offset (resolution 'point'). ``read_manual_prices`` is pure and
reports every bad row and field at once; nothing is written unless the whole file is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from ingestion.csv_files import CsvFile, CsvImportError, RowError, _decimal, _read_header, parse_timestamp
from ingestion.prices import SOURCE_MANUAL
from transforms.asset_registry import ensure_assets
from transforms.prices import PriceRow, apply_prices_to_positions, write_disagreement_flags, write_price_rows
from warehouse.calendar import close_date_of, cutoff_of
from warehouse.entities import Entity

COLUMNS = ("asset", "timestamp", "price_usd")
OPTIONAL_COLUMNS = ("source_note",)


@dataclass(frozen=True)
class ManualPrice:
    line: int
    asset: str
    ts: datetime
    price_usd: Decimal
    resolution: str  # 'day' | 'point'
    note: str | None


def _parse_when(text: str, tz: ZoneInfo) -> tuple[datetime, str]:
    value = text.strip()
    if len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not a date (YYYY-MM-DD) or an ISO 8601 timestamp: {value!r}") from None
        return cutoff_of(day, tz), "day"
    return parse_timestamp(value, None), "point"


def read_manual_prices(file: CsvFile, *, timezone_name: str = "UTC") -> list[ManualPrice]:
    """Validate a manual price CSV. Raises ``CsvImportError`` naming every bad line and field."""
    tz = ZoneInfo(timezone_name)
    raw_rows, _, errors = _read_header(file, COLUMNS, OPTIONAL_COLUMNS)
    result: list[ManualPrice] = []
    seen: dict[tuple[str, datetime], int] = {}
    for raw in raw_rows:
        if not raw:
            continue
        line = int(raw["__line__"])
        row = {k.lower(): v for k, v in raw.items() if k != "__line__"}
        asset = row.get("asset", "").strip().upper()
        if not asset:
            errors.append(RowError(line, "asset", "is required"))
        elif not asset.replace(".", "").replace("-", "").replace("_", "").isalnum():
            errors.append(RowError(line, "asset", f"not an asset symbol: {row['asset'].strip()!r}"))
        when = resolution = None
        if not row.get("timestamp", "").strip():
            errors.append(RowError(line, "timestamp", "is required"))
        else:
            try:
                when, resolution = _parse_when(row["timestamp"], tz)
            except ValueError as exc:
                errors.append(RowError(line, "timestamp", str(exc)))
        price = _decimal(row, "price_usd", line, errors, required=True, positive=True)
        if asset and when is not None:
            if (asset, when) in seen:
                errors.append(RowError(line, "timestamp", f"{asset} at {when.isoformat()} is already priced on line "
                                                          f"{seen[(asset, when)]}"))
            seen.setdefault((asset, when), line)
        if asset and when is not None and resolution and price is not None and price > 0:
            note = row.get("source_note", "").strip() or None
            result.append(ManualPrice(line, asset, when, price, resolution, note))
    if errors:
        raise CsvImportError(file.name, sorted(errors, key=lambda e: e.line))
    if not result:
        raise CsvImportError(file.name, [RowError(1, None, "the file has no price rows")])
    return result


@dataclass(frozen=True)
class ManualImportResult:
    file_name: str
    rows: int
    written: int
    flagged: int
    positions_repriced: int
    first_day: date
    last_day: date


def write_manual_prices(conn: Connection, entity: Entity, file_name: str, prices: list[ManualPrice], *,
                        threshold: Decimal) -> ManualImportResult:
    """Store validated manual prices (source 'manual'), re-flag disagreements, reprice the days' positions.

    Run inside one transaction: the file lands whole or not at all; importing it again changes nothing.
    """
    asset_ids = ensure_assets(conn, {p.asset for p in prices})
    rows = [PriceRow(asset_ids[p.asset], p.ts, p.price_usd, SOURCE_MANUAL, p.resolution, f"{p.asset}/USD", p.note)
            for p in prices]
    written = write_price_rows(conn, entity.id, rows)
    days = [close_date_of(p.ts, entity.tz) for p in prices]
    first, last = min(days), max(days)
    flagged = write_disagreement_flags(conn, entity, asset_ids.values(), first, last, threshold)
    repriced = apply_prices_to_positions(conn, entity, first, last)
    return ManualImportResult(file_name, len(prices), written, flagged, repriced, first, last)
