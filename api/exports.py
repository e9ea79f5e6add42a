"""CSV and XLSX exports of every list, streamed: ``?format=csv|xlsx`` or the ``Accept`` header.

A CSV holds money and quantities as exact decimal text. An XLSX writes the columns the response model
declares numeric (``Money``, ``Quantity``, ``Cents``: marked ``Numeric`` in api/schemas.py) as number cells
with a number format, and integer columns (counts, ids) as integers, so a spreadsheet can sum them. A number
cell holds 16 significant digits (openpyxl writes ``%.16g``; Excel keeps 15): enough for any amount in cents,
while the CSV and the JSON keep every decimal exactly. Text cells that a spreadsheet would run as a
formula (``=``, ``+``, ``-``, ``@`` followed by something that is not a number) are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from fastapi import Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api.errors import ValidationFailed

CSV_MEDIA = "text/csv"
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit, less the header row
CHUNK_ROWS = 500

Format = Literal["json", "csv", "xlsx"]
FormatQuery = Annotated[Format | None, Query(
    alias="format", description="`csv` or `xlsx` for a streamed export with the same filters (or send "
                                "`Accept: text/csv` / the XLSX media type); default JSON")]

EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {CSV_MEDIA: {"schema": {"type": "string"}},
                      XLSX_MEDIA: {"schema": {"type": "string", "format": "binary"}}},
          "description": "The envelope (JSON), or the export when format is csv or xlsx"},
}

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def requested_format(request: Request, format_param: Format | None) -> Format:
    """``format`` wins; else the Accept header (CSV or XLSX media type); else JSON."""
    if format_param is not None:
        return format_param
    accept = request.headers.get("accept", "").lower()
    if XLSX_MEDIA in accept:
        return "xlsx"
    if CSV_MEDIA in accept:
        return "csv"
    return "json"


class Columns(list):
    """Export columns (names, in order) and, for XLSX, the number format of each numeric column."""

    def __init__(self, names: Iterable[str], formats: dict[str, str] | None = None) -> None:
        super().__init__(names)
        self.formats = formats or {}


INTEGER_FORMAT = "0"


def _number_format(annotation: Any, metadata: list[Any]) -> str | None:
    from api.schemas import Numeric

    for item in metadata:
        if isinstance(item, Numeric):
            return item.number_format
    if annotation is int:
        return INTEGER_FORMAT
    for arg in get_args(annotation):  # Optional[...] / Annotated[...] inside a union
        if arg is int:
            return INTEGER_FORMAT
        for item in getattr(arg, "__metadata__", ()):
            if isinstance(item, Numeric):
                return item.number_format
    return None


def columns_of(model: type[BaseModel]) -> Columns:
    """Export columns: the response model's fields, in order, by their public names (with numeric formats)."""
    names, formats = [], {}
    for name, f in model.model_fields.items():
        column = f.alias or name
        names.append(column)
        number_format = _number_format(f.annotation, list(f.metadata))
        if number_format is not None:
            formats[column] = number_format
    return Columns(names, formats)


def xlsx_cell(value: Any, number_format: str | None) -> Any:
    """A value for an XLSX row: a number (Decimal or int, with its format) in a numeric column, an int always; else text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if number_format is not None and value is not None and value != "" and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, Decimal):
            return value
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return int(value) if number_format == INTEGER_FORMAT and "." not in value else Decimal(value.strip())
    return cell(value)


def cell(value: Any) -> str:
    """One value as export text: exact decimals and ids as is, null as empty, lists/objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, separators=(",", ":"), default=str)
    else:
        text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.match(text):
        text = "'" + text
    return text


def _csv_chunks(columns: list[str], rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    pending = 0
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
        pending += 1
        if pending >= CHUNK_ROWS:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue().encode("utf-8")


def _xlsx_chunks(columns: list[str], rows: Iterable[dict[str, Any]], sheet: str) -> Iterator[bytes]:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)  # rows go to a temporary file, not to memory
    worksheet = workbook.create_sheet(title=sheet[:31])
    worksheet.append(list(columns))
    formats = getattr(columns, "formats", {})
    count = 0
    for row in rows:
        count += 1
        if count > XLSX_MAX_ROWS:
            raise ValueError("more rows than an XLSX sheet holds")
        cells = []
        for c in columns:
            value = xlsx_cell(row.get(c), formats.get(c))
            if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
                number = WriteOnlyCell(worksheet, value=value)
                number.number_format = formats.get(c) or ("0" if isinstance(value, int) else "General")
                cells.append(number)
            else:
                cells.append(value)
        worksheet.append(cells)
    with tempfile.TemporaryFile() as out:
        workbook.save(out)
        out.seek(0)
        while chunk := out.read(64 * 1024):
            yield chunk


def export_response(fmt: Format, name: str, columns: list[str], rows: Iterable[dict[str, Any]],
                    on_close: Callable[[], None] | None = None) -> StreamingResponse:
    """A streamed CSV or XLSX of ``rows`` (dicts; ``columns`` picks and orders the keys), as an attachment
    ``<name>.csv|xlsx``. ``on_close`` runs when the stream ends or is abandoned (e.g. closes a connection)."""

    def guarded(chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from chunks
        finally:
            if on_close is not None:
                on_close()

    if fmt == "csv":
        body, media = _csv_chunks(columns, rows), CSV_MEDIA + "; charset=utf-8"
    elif fmt == "xlsx":
        body, media = _xlsx_chunks(columns, rows, name), XLSX_MEDIA
    else:  # pragma: no cover - callers only export csv or xlsx
        raise ValidationFailed.for_field("format", f"not an export format: {fmt}")
    return StreamingResponse(guarded(body), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


def list_or_export(request: Request, fmt: Format | None, name: str, model: type[BaseModel], items: list[dict[str, Any]],
                   **meta: Any) -> Any:
    """A non-paginated list: the JSON envelope, or (``format``/``Accept``) the same rows streamed as CSV or XLSX
    with ``model``'s fields as columns, as ``<name>.csv|xlsx``."""
    from api.envelope import list_success

    out = requested_format(request, fmt)
    if out != "json":
        return export_response(out, name, columns_of(model), items)
    return list_success(request, items, **meta)
