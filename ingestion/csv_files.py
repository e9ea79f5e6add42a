"""CSV files: the generic ledger CSV (v1) and the balances CSV (v1).

``read_*`` functions are pure: they turn a (small) file into validated rows or a list of row
errors naming line and field. ``load_*`` functions (``import_csv``) stream a file of any size into
staging in the caller's transaction: the file is decoded a chunk at a time, each row is checked and
COPied into a temporary table as it is read, checks across rows (an id used twice with different
content) run there, then one insert skips rows already staged. A file lands whole or not at all,
importing it again changes nothing, and memory stays flat with the file's size.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from sqlalchemy.engine import Connection

from ingestion.staging import (RAW_RECORDS_RECORD_COLUMNS, RAW_RECORDS_RUN_COLUMNS, BalanceSnapshotIn, RawRecordIn,
                               RunFile, already_staged, create_balance_snapshots_temp, create_raw_records_temp,
                               finish_run, insert_balance_snapshots_from_temp, insert_raw_records_from_temp,
                               last_raw_record_id, mark_staged, raw_records_copy_prefix, start_run,
                               write_balance_snapshots, write_raw_records)
from transforms.ledger_mapping import V11_ALIASES
from warehouse.bulk import CopyLines, copy_text, copy_writer
from warehouse.numbers import INPUT_DIGITS, NotADecimal, D, parse_input_decimal, to_text

SOURCE = "csv"
LEDGER_STREAM = "ledger"
BALANCES_STREAM = "balances"

LEDGER_COLUMNS = (
    "id", "timestamp", "action", "asset", "quantity", "unit_price_usd", "fee_asset", "fee_amount",
    "quote_asset", "quote_quantity", "account", "tx_hash", "external_id", "notes",
)
# Optional superset columns: which account type / sub-account of ``account`` a row belongs to.
LEDGER_OPTIONAL_COLUMNS = ("account_type", "sub_account")
LEDGER_REQUIRED = ("timestamp", "action", "asset", "quantity", "account")
BALANCE_COLUMNS = ("timestamp", "account", "asset", "quantity")
BALANCE_OPTIONAL_COLUMNS = ("account_type", "sub_account")

ACTIONS = ("BUY", "SELL", "TRANSFER_IN", "TRANSFER_OUT", "FEE", "INCOME", "STAKING_REWARD", "AIRDROP",
           "BORROW", "REPAY", "INTEREST_EXPENSE", "SPEND", "DEPOSIT", "WITHDRAWAL", "INTEREST", "REBATE", "MINING")
# unit_price_usd is required for these, except on a BUY/SELL with quote_asset and quote_quantity (valued by the
# event rule: a fiat side, a stablecoin side, the received asset's price, the given asset's; transforms/events.py)
PRICED_ACTIONS = ("BUY", "SELL", "INCOME", "STAKING_REWARD", "AIRDROP")
EARLIEST_TIME = datetime(2009, 1, 3, tzinfo=timezone.utc)  # the Bitcoin genesis block: nothing crypto is older
# the account types a file may name: the generic ones and those the exchange connectors and exports book to
ACCOUNT_TYPES = ("spot", "margin", "futures", "funding", "wallet", "vault", "earn", "coin_futures", "isolated_margin",
                 "options", "staking", "collateral", "loan", "margin_loan")
# v1.1 column names (the seed's files): asset_id = asset, wallet = account, venue = where the wallet is held
V11_COLUMNS = ("asset_id", "wallet", "venue")
DEFAULT_ACCOUNT_TYPE = "wallet"
# every column a file may give (v1 names, optional ones, v1.1 names)
LEDGER_ACCEPTED = LEDGER_COLUMNS + LEDGER_OPTIONAL_COLUMNS + V11_COLUMNS
BALANCE_ACCEPTED = BALANCE_COLUMNS + BALANCE_OPTIONAL_COLUMNS + V11_COLUMNS
CHUNK_BYTES = 1 << 20  # a file is read and decoded a MiB at a time
MAX_LINE_CHARS = 4 << 20  # a line longer than this is refused (fields are bounded by the csv module's 128 KiB)
MAX_ERRORS_KEPT = 1_000  # a refusal keeps the first errors (by line) and counts the rest
# Identifying fields are bounded well under PostgreSQL's index entry limit (2,704 bytes for the natural key of
# staging); free text (notes) is bounded by the csv module's field limit only.
FIELD_MAX_CHARS = {"id": 256, "external_id": 256, "tx_hash": 256, "account": 128, "sub_account": 128, "asset": 128,
                   "fee_asset": 128, "quote_asset": 128}


@dataclass(frozen=True)
class RowError:
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


class CsvImportError(ValueError):
    """A file that cannot be imported; ``errors`` names every bad row and field."""

    def __init__(self, file_name: str, errors: Sequence[RowError], *, total: int | None = None) -> None:
        self.file_name = file_name
        self.errors = list(errors)
        self.total = max(total or 0, len(self.errors))  # errors found; ``errors`` may keep only the first of them
        shown = "\n".join(f"  {e}" for e in self.errors[:50])
        more = f"\n  ... and {self.total - 50} more" if self.total > 50 else ""
        super().__init__(f"{file_name}: {self.total} error(s), nothing imported\n{shown}{more}")


@dataclass(frozen=True)
class StagedRow:
    """One validated CSV row, ready for staging."""

    line: int
    source_raw_id: str
    account: str
    occurred_at: datetime
    payload: dict[str, str]
    payload_hash: str
    # balances only
    account_type: str = DEFAULT_ACCOUNT_TYPE
    sub_account: str = ""
    balances: dict[str, str] = field(default_factory=dict)


class CsvFile:
    """A CSV file: its ``text`` given (tests, small files), or a ``path`` read in chunks when it is imported, so
    memory stays flat with the file's size (``lines``). ``text`` of a path-backed file decodes it whole (exchange
    exports and manual prices, small files)."""

    __slots__ = ("name", "path", "_text", "on_progress")

    def __init__(self, name: str, text: str | None = None, *, path: Path | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        if text is None and path is None:
            raise ValueError("a CsvFile needs its text or its path")
        self.name = name
        self.path = path
        self._text = text
        self.on_progress = on_progress
        """Called with the bytes of the file read so far, after each chunk a pass over a file on disk reads
        (``lines``): a progress display. A file read twice (one already partly staged, or UTF-16) starts again at
        0."""

    def __repr__(self) -> str:
        return f"CsvFile({self.name!r}{', path=' + repr(str(self.path)) if self.path else ''})"

    @property
    def text(self) -> str:
        if self._text is None:
            assert self.path is not None
            self._text = decode_csv_bytes(self.name, self.path.read_bytes())
        return self._text

    @property
    def file_hash(self) -> str:
        """sha256 of the file's text in UTF-8 (the same for a file saved as UTF-8, with a BOM or as UTF-16)."""
        hasher = hashlib.sha256()
        for _ in self.lines(hasher):
            pass
        return hasher.hexdigest()

    def lines(self, hasher: Any = None) -> Iterator[str]:
        """The file's lines (split on ``\n`` only, ends kept: what ``csv.reader`` expects), decoded as
        ``from_path`` says; ``hasher`` (a hashlib object) is fed the text in UTF-8 on the way."""
        if self._text is not None or self.path is None:
            text = self.text
            if hasher is not None:
                hasher.update(text.encode("utf-8"))
            return iter(io.StringIO(text))
        return _stream_lines(self.name, self.path, hasher, self.on_progress)

    @classmethod
    def from_path(cls, path: Path | str, *, on_progress: Callable[[int], None] | None = None) -> "CsvFile":
        """A file on disk, read when used: UTF-8 (with or without a BOM), or UTF-16 with its BOM; anything else
        (Windows-1252, Latin-1, ...) and NUL bytes are refused with a ``CsvImportError`` naming line, field and how
        to fix it."""
        path = Path(path)
        return cls(path.name, path=path, on_progress=on_progress)


@dataclass(frozen=True)
class ImportResult:
    file_name: str
    kind: str
    rows: int
    inserted: int
    run_id: uuid.UUID
    first_day: datetime | None
    last_day: datetime | None

    @property
    def skipped(self) -> int:
        return self.rows - self.inserted


# ------------------------------------------------------------------------------- parsing


_PLAIN_JSON = re.compile(r'[ !#-\[\]-~]*')  # printable ASCII but '"' and '\\': JSON writes it as it is


def _normalized_hash(values: dict[str, str]) -> str:
    """sha256 of the row's canonical JSON (keys sorted, values stripped, empty values left out). Plain ASCII rows
    (nearly all) are written directly, byte for byte what ``json.dumps`` writes; anything else goes through it."""
    normalized = {k: v.strip() for k, v in sorted(values.items()) if v.strip() != ""}
    plain = _PLAIN_JSON.fullmatch
    if all(plain(k) and plain(v) for k, v in normalized.items()):
        text = "{" + ",".join(f'"{k}":"{v}"' for k, v in normalized.items()) + "}"
    else:
        text = json.dumps(normalized, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def parse_timestamp(text: str, naive_timezone: str | None) -> datetime:
    """ISO 8601 with an offset or ``Z``; a naive time only when a timezone is given."""
    value = text.strip()
    if not value:
        raise ValueError("timestamp is required")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        if naive_timezone is None:
            raise ValueError(f"timestamp {value!r} has no UTC offset; add one or import with --timezone")
        parsed = parsed.replace(tzinfo=ZoneInfo(naive_timezone))
    try:
        utc = parsed.astimezone(timezone.utc)
    except OverflowError:
        utc = None
    latest = datetime.now(timezone.utc) + timedelta(days=1)
    if utc is None or not EARLIEST_TIME <= utc <= latest:
        raise ValueError(f"timestamp {value!r} is outside {EARLIEST_TIME:%Y-%m-%d} (the first Bitcoin block) .. "
                         f"{latest:%Y-%m-%d} (tomorrow)")
    return utc


def _encoding_of(head: bytes) -> tuple[str, str]:
    """(codec, codec of a mid-stream piece) by BOM: UTF-16 LE/BE, else UTF-8 (a UTF-8 BOM is dropped)."""
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16", "utf-16-le"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16", "utf-16-be"
    return "utf-8-sig", "utf-8"


def _column_at(header: Sequence[str] | None, line_text: str, line: int) -> str | None:
    """The column a position on a line falls in (counting commas: a best guess inside quotes), by header name."""
    if line <= 1 or not header:
        return "header" if line <= 1 else None
    index = line_text.count(",")
    return header[index] if index < len(header) else f"beyond the last column ({header[-1]})"


def _decode_error(name: str, encoding: str, exc: UnicodeDecodeError, piece: str, offset: int, line: int,
                  header: Sequence[str] | None) -> CsvImportError:
    """A refusal of undecodable bytes: ``piece`` the text of the line up to them, ``offset`` their file offset."""
    kind = "UTF-16" if encoding == "utf-16" else "UTF-8"
    return CsvImportError(name, [RowError(line, _column_at(header, piece, line), (
        f"the file is not {kind}: byte 0x{exc.object[exc.start]:02x} at offset {offset} cannot be read "
        "(Windows-1252 or Latin-1?); save it as UTF-8 (Excel: 'CSV UTF-8')"))])


def _nul_error(name: str, line: int, piece: str, header: Sequence[str] | None) -> CsvImportError:
    return CsvImportError(name, [RowError(line, _column_at(header, piece, line), "contains a NUL byte: not a text CSV file")])


def _header_of(text: str) -> list[str]:
    try:
        return [h.strip().lower() for h in next(csv.reader([text.split("\n", 1)[0]]), [])]
    except csv.Error:
        return []


def decode_csv_bytes(name: str, data: bytes) -> str:
    """Decode a CSV file's bytes whole (see ``CsvFile.from_path``)."""
    encoding, piece_codec = _encoding_of(data)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        before = exc.object[:exc.start].decode(piece_codec, errors="replace")
        line = before.count("\n") + 1
        raise _decode_error(name, encoding, exc, before.rsplit("\n", 1)[-1], exc.start, line, _header_of(before)) from None
    if "\x00" in text:
        before = text[:text.index("\x00")]
        raise _nul_error(name, before.count("\n") + 1, before.rsplit("\n", 1)[-1], _header_of(text))
    return text


def _stream_lines(name: str, path: Path, hasher: Any, on_progress: Callable[[int], None] | None = None) -> Iterator[str]:
    """``CsvFile.lines`` of a file on disk: decoded chunk by chunk (``CHUNK_BYTES``), split on ``\n``; ``on_progress``
    is told the bytes read so far after each chunk."""
    with path.open("rb") as raw:
        data = raw.read(CHUNK_BYTES)
        encoding, piece_codec = _encoding_of(data)
        decoder = codecs.getincrementaldecoder(encoding)()
        consumed, newlines, tail = 0, 0, ""
        header: list[str] | None = None
        while True:
            following = raw.read(CHUNK_BYTES) if data else b""
            try:
                text = decoder.decode(data, final=not following)
            except UnicodeDecodeError as exc:
                before = exc.object[:exc.start].decode(piece_codec, errors="replace")
                offset = consumed - (len(exc.object) - len(data)) + exc.start
                piece = (tail + before).rsplit("\n", 1)[-1]
                line = newlines + before.count("\n") + 1
                raise _decode_error(name, encoding, exc, piece, offset, line, header or _header_of(tail + before)) from None
            consumed += len(data)
            if on_progress is not None:
                on_progress(consumed)
            if "\x00" in text:
                before = tail + text[:text.index("\x00")]
                raise _nul_error(name, newlines + before.count("\n") + 1, before.rsplit("\n", 1)[-1],
                                 header or _header_of(before))
            if hasher is not None and text:
                hasher.update(text.encode("utf-8"))
            buffer = tail + text
            cut = buffer.rfind("\n") + 1
            if cut:
                complete, tail = buffer[:cut], buffer[cut:]
                if header is None:
                    header = _header_of(complete)
                newlines += complete.count("\n")
                yield from io.StringIO(complete)
            else:
                tail = buffer
                if len(tail) > MAX_LINE_CHARS:
                    raise CsvImportError(name, [RowError(newlines + 1, _column_at(header, tail, newlines + 1),
                                                         f"a line longer than {MAX_LINE_CHARS:,} characters")])
            if not following:
                break
            data = following
        if tail:
            yield tail


class _Lines:
    """An iterator over a file's lines that remembers the last one (to say which field a csv.Error is in)."""

    __slots__ = ("_lines", "last")

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.last = ""

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        self.last = next(self._lines)
        return self.last


def _long_field(header: Sequence[str], text: str) -> str | None:
    """The column of the first field over the csv module's limit on ``text`` (quotes respected)."""
    limit = csv.field_size_limit()
    index, start, quoted = 0, 0, False
    for position, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            if position - start > limit:
                break
            index, start = index + 1, position + 1
    return header[index] if index < len(header) else None


def _check_header(header: list[str], required: Sequence[str], optional: Sequence[str]) -> tuple[list[str], list[RowError]]:
    original = [h.strip() for h in header]
    lowered = [h.lower() for h in original]
    errors: list[RowError] = []
    present = set(lowered)
    for name, aliases in V11_ALIASES.items():
        given = [a for a in aliases if a in present and a in optional]
        if given and name in present:
            errors.append(RowError(1, None, f"columns {name} and {given[0]} are the same ({given[0]} is its v1.1 name): "
                                            "give one of them"))
        elif given:
            present.add(name)
    missing = [c for c in required if c not in present]
    if missing:
        errors.append(RowError(1, None, f"header lacks column(s) {', '.join(missing)}"))
    known = set(required) | set(optional)
    unknown = [h for h in original if h.lower() not in known]
    if unknown:
        errors.append(RowError(1, None, f"unknown column(s) {', '.join(unknown)}"))
    dupes = sorted({h for h in lowered if lowered.count(h) > 1})
    if dupes:
        errors.append(RowError(1, None, f"duplicate column(s) {', '.join(dupes)}"))
    return original, errors


def _records(file: CsvFile, required: Sequence[str], optional: Sequence[str], errors: list[RowError],
             hasher: Any = None, header_out: list[str] | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """The data rows after a valid header, one at a time: (line, {column as written: value}). Header and
    structure errors (a wrong number of values, an unreadable line) are appended to ``errors``; undecodable bytes
    and NUL raise ``CsvImportError`` from the file's lines."""
    header = [] if header_out is None else header_out
    for line, values in _record_values(file, required, optional, errors, hasher, header):
        yield line, dict(zip(header, values))


def _record_values(file: CsvFile, required: Sequence[str], optional: Sequence[str], errors: list[RowError],
                   hasher: Any, header_out: list[str]) -> Iterator[tuple[int, list[str]]]:
    """``_records`` as (line, [value of each column]): the header as written is in ``header_out`` by the first row."""
    lines = _Lines(file.lines(hasher))
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        errors.append(RowError(1, None, "the file is empty: a header row is required"))
        return
    except csv.Error as exc:
        errors.append(RowError(1, None, f"unreadable CSV header: {exc}"))
        return
    original, header_errors = _check_header(header, required, optional)
    header_out.extend(original)
    if header_errors:
        errors.extend(header_errors)
        return
    width = len(original)
    line = 1
    while True:
        line += 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field over the csv module's limit (128 KiB), a NUL in text given directly, ...
            errors.append(RowError(line, _long_field(original, lines.last), f"unreadable CSV: {exc}"))
            return
        if not "".join(values).strip():
            continue  # a blank line
        if len(values) != width:
            field = original[len(values)] if len(values) < width else original[-1]
            extra = "" if len(values) < width else " (values beyond the last column: an unquoted comma?)"
            errors.append(RowError(line, field, f"expected {width} values, found {len(values)}{extra}"))
            continue
        yield line, values


def _read_header(file: CsvFile, required: Sequence[str], optional: Sequence[str]) -> tuple[list[dict[str, str]], list[str], list[RowError]]:
    """Every data row of a small file (each with ``__line__``), its header and the header/structure errors."""
    errors: list[RowError] = []
    rows: list[dict[str, str]] = []
    header: list[str] = []
    try:
        for line, row in _records(file, required, optional, errors, header_out=header):
            row["__line__"] = str(line)
            rows.append(row)
    except CsvImportError as exc:
        return [], [], exc.errors
    if any(e.line == 1 for e in errors):
        return [], header, errors
    return rows, header, errors


def _decimal(row: dict[str, str], name: str, line: int, errors: list[RowError], *,
             required: bool, positive: bool = False, non_negative: bool = False) -> Decimal | None:
    text = row.get(name, "").strip()
    if not text:
        if required:
            errors.append(RowError(line, name, "is required"))
        return None
    try:
        value = parse_input_decimal(text)
    except NotADecimal as exc:
        errors.append(RowError(line, name, str(exc)))
        return None
    if positive and value <= 0:
        errors.append(RowError(line, name, f"must be positive, got {text}"))
    if non_negative and value < 0:
        errors.append(RowError(line, name, f"must not be negative, got {text}"))
    return value


def _lower_keys(row: dict[str, str]) -> dict[str, str]:
    """The row by lower-case column name, v1.1 names read as their v1 columns (``asset_id`` as ``asset``, ``wallet``
    else ``venue`` as ``account``)."""
    lowered = {k.lower(): v for k, v in row.items() if k != "__line__"}
    for name, aliases in V11_ALIASES.items():
        if name not in lowered:
            value = next((lowered[a] for a in aliases if lowered.get(a, "").strip()), None)
            if value is not None or any(a in lowered for a in aliases):
                lowered[name] = value or ""
    return lowered


def _check_lengths(row: dict[str, str], line: int, errors: list[RowError]) -> None:
    for name, limit in FIELD_MAX_CHARS.items():
        value = row.get(name)
        if value is not None and len(value) > limit and len(value.strip()) > limit:
            errors.append(RowError(line, name, f"is {len(value.strip()):,} characters long; at most {limit} are accepted"))


def _check_ledger_row(raw: dict[str, str], line: int, naive_timezone: str | None, errors: list[RowError]) -> StagedRow | None:
    """One ledger row checked field by field: the staged row, or None with its errors appended."""
    row = _lower_keys(raw)
    row_errors: list[RowError] = []
    _check_lengths(row, line, row_errors)
    try:
        occurred_at = parse_timestamp(row.get("timestamp", ""), naive_timezone)
    except ValueError as exc:
        row_errors.append(RowError(line, "timestamp", str(exc)))
        occurred_at = None
    action = row.get("action", "").strip().upper()
    if not action:
        row_errors.append(RowError(line, "action", "is required"))
    elif action not in ACTIONS:
        row_errors.append(RowError(line, "action", f"unknown action {row['action'].strip()!r} (expected one of {', '.join(ACTIONS)})"))
    if not row.get("asset", "").strip():
        row_errors.append(RowError(line, "asset", "is required"))
    account = row.get("account", "").strip()
    if not account:
        row_errors.append(RowError(line, "account", "is required"))
    _decimal(row, "quantity", line, row_errors, required=True, positive=True)
    quote_asset = row.get("quote_asset", "").strip()
    quoted = bool(quote_asset and row.get("quote_quantity", "").strip())
    _decimal(row, "unit_price_usd", line, row_errors,
             required=action in PRICED_ACTIONS and not (quoted and action in ("BUY", "SELL")), non_negative=True)
    fee_asset = row.get("fee_asset", "").strip()
    fee = _decimal(row, "fee_amount", line, row_errors, required=bool(fee_asset), non_negative=True)
    if fee is not None and not fee_asset:
        row_errors.append(RowError(line, "fee_asset", "is required when fee_amount is given"))
    quote_qty = _decimal(row, "quote_quantity", line, row_errors, required=bool(quote_asset), positive=True)
    if quote_qty is not None and not quote_asset:
        row_errors.append(RowError(line, "quote_asset", "is required when quote_quantity is given"))
    if (quote_asset or quote_qty is not None) and action not in ("BUY", "SELL"):
        row_errors.append(RowError(line, "quote_asset", f"only BUY and SELL have a quote, not {action}"))
    account_type = (row.get("account_type", "").strip().lower() or DEFAULT_ACCOUNT_TYPE)
    if account_type not in ACCOUNT_TYPES:
        row_errors.append(RowError(line, "account_type", f"unknown account type {account_type!r} (expected one of {', '.join(ACCOUNT_TYPES)})"))
    if row_errors:
        errors.extend(row_errors)
        return None
    assert occurred_at is not None
    payload_hash = _normalized_hash(row)
    raw_id = row.get("id", "").strip() or row.get("external_id", "").strip() or f"sha256:{payload_hash}"
    return StagedRow(line=line, source_raw_id=raw_id, account=account, occurred_at=occurred_at, payload=raw,
                     payload_hash=payload_hash, account_type=account_type, sub_account=row.get("sub_account", "").strip())


def _conflicting_id(line: int, raw_id: str, first_line: int) -> RowError:
    return RowError(line, "id", f"id {raw_id!r} already used on line {first_line} with different content")


def _check_balance_row(raw: dict[str, str], line: int, naive_timezone: str | None,
                       errors: list[RowError]) -> tuple[StagedRow, str, Decimal] | None:
    """One balances row checked: (the staged row, the asset as keyed, the quantity), or None with its errors."""
    row = _lower_keys(raw)
    row_errors: list[RowError] = []
    _check_lengths(row, line, row_errors)
    try:
        occurred_at = parse_timestamp(row.get("timestamp", ""), naive_timezone)
    except ValueError as exc:
        row_errors.append(RowError(line, "timestamp", str(exc)))
        occurred_at = None
    account = row.get("account", "").strip()
    asset = row.get("asset", "").strip()
    if not account:
        row_errors.append(RowError(line, "account", "is required"))
    if not asset:
        row_errors.append(RowError(line, "asset", "is required"))
    quantity = _decimal(row, "quantity", line, row_errors, required=True)
    account_type = (row.get("account_type", "").strip().lower() or DEFAULT_ACCOUNT_TYPE)
    if account_type not in ACCOUNT_TYPES:
        row_errors.append(RowError(line, "account_type", f"unknown account type {account_type!r} (expected one of {', '.join(ACCOUNT_TYPES)})"))
    if row_errors:
        errors.extend(row_errors)
        return None
    assert occurred_at is not None and quantity is not None
    payload_hash = _normalized_hash(row)
    staged = StagedRow(line=line, source_raw_id=f"sha256:{payload_hash}", account=account, occurred_at=occurred_at,
                       payload=raw, payload_hash=payload_hash, account_type=account_type,
                       sub_account=row.get("sub_account", "").strip(), balances={asset: to_text(quantity) or "0"})
    return staged, asset.upper(), quantity


def _conflicting_balance(line: int, asset: str, account: str, at: datetime, first_line: int) -> RowError:
    return RowError(line, "quantity", f"{asset} of {account} at {at.isoformat()} is already reported on line "
                                      f"{first_line} with a different quantity")


def _refuse(file: CsvFile, errors: list[RowError], dropped: int = 0) -> CsvImportError:
    kept = sorted(errors, key=lambda e: (e.line, e.field or ""))[:MAX_ERRORS_KEPT]
    return CsvImportError(file.name, kept, total=len(errors) + dropped)


def read_ledger_csv(file: CsvFile, *, naive_timezone: str | None = None) -> list[StagedRow]:
    """Validate a ledger CSV (v1) in memory (small files; imports stream through ``load_ledger_csv``). Raises
    ``CsvImportError`` listing every bad row and field."""
    errors: list[RowError] = []
    staged: list[StagedRow] = []
    seen: dict[str, tuple[int, str]] = {}
    try:
        for line, raw in _records(file, LEDGER_REQUIRED, LEDGER_ACCEPTED, errors):
            row = _check_ledger_row(raw, line, naive_timezone, errors)
            if row is None:
                continue
            first = seen.get(row.source_raw_id)
            if first is not None:  # the same row twice in one file is one record
                if first[1] != row.payload_hash:
                    errors.append(_conflicting_id(line, row.source_raw_id, first[0]))
                continue
            seen[row.source_raw_id] = (line, row.payload_hash)
            staged.append(row)
    except CsvImportError as exc:
        errors.extend(exc.errors)
    if errors:
        raise _refuse(file, errors)
    return staged


def read_balances_csv(file: CsvFile, *, naive_timezone: str | None = None) -> list[StagedRow]:
    """Validate a balances CSV (v1) in memory: one reported balance per row (imports: ``load_balances_csv``)."""
    errors: list[RowError] = []
    staged: list[StagedRow] = []
    seen: dict[tuple[str, str, str, datetime, str], tuple[int, Decimal]] = {}
    try:
        for line, raw in _records(file, BALANCE_COLUMNS, BALANCE_ACCEPTED, errors):
            checked = _check_balance_row(raw, line, naive_timezone, errors)
            if checked is None:
                continue
            row, asset, quantity = checked
            key = (row.account, row.account_type, row.sub_account, row.occurred_at, asset)
            first = seen.setdefault(key, (line, quantity))
            if first[1] != quantity:  # the same instant and amount spelled differently is no conflict
                errors.append(_conflicting_balance(line, asset, row.account, row.occurred_at, first[0]))
                continue
            staged.append(row)
    except CsvImportError as exc:
        errors.extend(exc.errors)
    if errors:
        raise _refuse(file, errors)
    return staged


# ------------------------------------------------------------------------------- loading (streamed)


def _run_file(file: CsvFile) -> RunFile:
    return RunFile(name=file.name, hash=file.file_hash)


def _result(file: CsvFile, kind: str, rows: Sequence[StagedRow], inserted: int, run_id: uuid.UUID) -> ImportResult:
    return ImportResult(file.name, kind, len(rows), inserted, run_id,
                        min((r.occurred_at for r in rows), default=None), max((r.occurred_at for r in rows), default=None))


def write_ledger_rows(conn: Connection, entity_id: int, file: CsvFile, rows: Sequence[StagedRow]) -> ImportResult:
    """Append validated ledger rows to ``raw_records``; rows already staged are skipped."""
    run_id = start_run(conn, entity_id, SOURCE, LEDGER_STREAM, rows=len(rows), file=_run_file(file))
    inserted = write_raw_records(conn, entity_id, SOURCE, LEDGER_STREAM, [
        RawRecordIn(account=r.account, source_raw_id=r.source_raw_id, occurred_at=r.occurred_at, payload=r.payload,
                    payload_hash=r.payload_hash, line_number=r.line) for r in rows], run_id, file=_run_file(file))
    finish_run(conn, run_id, seen=len(rows), inserted=inserted)
    return _result(file, "ledger", rows, inserted, run_id)


def write_balance_rows(conn: Connection, entity_id: int, file: CsvFile, rows: Sequence[StagedRow]) -> ImportResult:
    """Append validated balance rows to ``raw_balance_snapshots``; rows already staged are skipped."""
    run_id = start_run(conn, entity_id, SOURCE, BALANCES_STREAM, rows=len(rows), file=_run_file(file))
    inserted = write_balance_snapshots(conn, entity_id, SOURCE, [
        BalanceSnapshotIn(account=r.account, account_type=r.account_type, sub_account=r.sub_account,
                          snapshot_time=r.occurred_at, balances=r.balances, payload=r.payload,
                          payload_hash=r.payload_hash, line_number=r.line) for r in rows], run_id, file=_run_file(file))
    finish_run(conn, run_id, seen=len(rows), inserted=inserted)
    return _result(file, "balances", rows, inserted, run_id)


class _Span:
    """The earliest and latest time of the rows loaded, and how many they are."""

    __slots__ = ("first", "last", "rows")

    def __init__(self) -> None:
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.rows = 0

    def add(self, at: datetime) -> None:
        self.rows += 1
        if self.first is None or at < self.first:
            self.first = at
        if self.last is None or at > self.last:
            self.last = at


def _hash_before_reading(file: CsvFile) -> str | None:
    """``CsvFile.file_hash`` without decoding the file, when that is cheap: a file given as text, or a UTF-8 file
    on disk (its bytes after a BOM are its text in UTF-8, if they decode at all: the import reads them and compares
    the hash it computes on the way). None for a UTF-16 file."""
    if file.path is None or file._text is not None:
        return hashlib.sha256(file.text.encode("utf-8")).hexdigest()
    hasher = hashlib.sha256()
    with file.path.open("rb") as raw:
        data = raw.read(CHUNK_BYTES)
        if _encoding_of(data)[0] != "utf-8-sig":
            return None
        data = data.removeprefix(codecs.BOM_UTF8)
        while data:
            hasher.update(data)
            data = raw.read(CHUNK_BYTES)
    return hasher.hexdigest()


# a plain number the ledger accepts as it is: digits, an optional point, at most INPUT_DIGITS on each side, no sign
_PLAIN_NUMBER = re.compile(r"(?:[0-9]{1,%d}(?:\.[0-9]{0,%d})?|\.[0-9]{1,%d})" % ((INPUT_DIGITS,) * 3)).fullmatch
_ACTION_SET = frozenset(ACTIONS)
_PRICED_SET = frozenset(PRICED_ACTIONS)
_ACCOUNT_TYPE_SET = frozenset(ACCOUNT_TYPES)
_SHORTEST_LIMIT = min(FIELD_MAX_CHARS.values())

# What a row's checks produce for the COPY: the record's fields in COPY text format (``RAW_RECORDS_RECORD_COLUMNS``,
# tab-separated) and its time; None when the row needs ``_check_ledger_row``.
FastLedgerCheck = Callable[[list[str], int], "tuple[str, datetime] | None"]


def _fast_ledger_check(header: Sequence[str], naive_timezone: str | None) -> FastLedgerCheck:
    """The check of a ledger file's plain rows, built once for its header: a row of printable ASCII without '"'
    or a backslash, every field within its bounds and every rule met, gets its COPY fields straight from its values (no
    dict, no Decimal, its canonical JSON written directly). Anything else returns None, and the row goes through
    ``_check_ledger_row``, which names its errors. Whatever this accepts, ``_check_ledger_row`` accepts with the same
    fields (tests/unit/test_csv_files.py holds the two together). A header with v1.1 names: every row goes there."""
    lowered = [h.lower() for h in header]
    if any(alias in lowered for aliases in V11_ALIASES.values() for alias in aliases):
        return lambda values, line: None
    width = len(header)

    def at(name: str) -> int:  # the column's index; an absent one reads the "" appended to every row
        return lowered.index(name) if name in lowered else width

    i_id, i_external, i_time, i_action, i_asset, i_quantity, i_price, i_fee_asset, i_fee, i_quote_asset, i_quote, \
        i_account, i_account_type = map(at, ("id", "external_id", "timestamp", "action", "asset", "quantity",
                                             "unit_price_usd", "fee_asset", "fee_amount", "quote_asset",
                                             "quote_quantity", "account", "account_type"))
    limits = [(at(name), limit) for name, limit in FIELD_MAX_CHARS.items() if name in lowered]
    key_order = sorted(range(width), key=lowered.__getitem__)  # the canonical JSON of a row: keys sorted
    hash_keys, in_key_order = [f'"{lowered[i]}":"' for i in key_order], itemgetter(*key_order)
    payload_format = "{" + ",".join(f'"{name}":"%s"' for name in header) + "}"
    zone = ZoneInfo(naive_timezone) if naive_timezone else None
    utc_zone, earliest = timezone.utc, EARLIEST_TIME
    latest = datetime.now(timezone.utc) + timedelta(days=1)  # parse_timestamp's bound, which only moves later
    from_iso, plain_number, sha256, strip = datetime.fromisoformat, _PLAIN_NUMBER, hashlib.sha256, str.strip

    def check(values: list[str], line: int) -> tuple[str, datetime] | None:
        joined = "".join(values)
        if not (joined.isascii() and joined.isprintable()) or '"' in joined or "\\" in joined:
            return None
        if max(map(len, values)) > _SHORTEST_LIMIT and any(len(values[i]) > limit for i, limit in limits):
            return None
        values.append("")
        v = list(map(strip, values))
        try:
            parsed = from_iso(v[i_time].replace("Z", "+00:00").replace("z", "+00:00"))
            if parsed.tzinfo is None:
                if zone is None:
                    return None
                parsed = parsed.replace(tzinfo=zone)
            utc = parsed.astimezone(utc_zone)
        except (ValueError, OverflowError):
            return None
        if not earliest <= utc <= latest:
            return None
        action, account, quantity = v[i_action].upper(), v[i_account], v[i_quantity]
        if (action not in _ACTION_SET or not account or not v[i_asset] or not plain_number(quantity)
                or not quantity.strip("0.")):
            return None
        quote_asset, quote = v[i_quote_asset], v[i_quote]
        if quote:
            if not quote_asset or not plain_number(quote) or not quote.strip("0.") or action not in ("BUY", "SELL"):
                return None
        elif quote_asset:
            return None
        price = v[i_price]
        if price:
            if not plain_number(price):
                return None
        elif action in _PRICED_SET and not (quote and action in ("BUY", "SELL")):
            return None
        fee_asset, fee = v[i_fee_asset], v[i_fee]
        if (fee and (not fee_asset or not plain_number(fee))) or (fee_asset and not fee):
            return None
        if (v[i_account_type].lower() or DEFAULT_ACCOUNT_TYPE) not in _ACCOUNT_TYPE_SET:
            return None
        digest = sha256(("{" + ",".join([key + text + '"' for key, text in zip(hash_keys, in_key_order(v)) if text])
                         + "}").encode()).hexdigest()
        payload = payload_format % tuple(values[:width])
        return f"{account}\t{v[i_id] or v[i_external] or 'sha256:' + digest}\t{payload}\t{digest}\t{utc.isoformat()}\t{line}", utc

    return check


def _ledger_copy_fields(row: StagedRow) -> str:
    """``_fast_ledger_check``'s COPY fields of a row checked by ``_check_ledger_row``."""
    return "\t".join(map(copy_text, (row.account, row.source_raw_id, json.dumps(row.payload), row.payload_hash,
                                     row.occurred_at.isoformat(), row.line)))


def _ledger_copy_lines(file: CsvFile, naive_timezone: str | None, errors: list[RowError], hasher: Any, span: _Span,
                       prefix: str = "", ord_column: bool = False) -> Iterator[str]:
    """Check every row of a ledger file: the COPY line of each valid one (``prefix``, its fields, its line number
    again as ``ord`` if asked), the errors of the others (and of the file) appended to ``errors``; ``span`` counts
    the lines given and their span of time."""
    header: list[str] = []
    fast: FastLedgerCheck | None = None
    try:
        for line, values in _record_values(file, LEDGER_REQUIRED, LEDGER_ACCEPTED, errors, hasher, header):
            if fast is None:
                fast = _fast_ledger_check(header, naive_timezone)
            checked = fast(values, line)
            if checked is None:
                row = _check_ledger_row(dict(zip(header, values)), line, naive_timezone, errors)
                if row is None:
                    continue
                checked = _ledger_copy_fields(row), row.occurred_at
            fields, at = checked
            yield f"{prefix}{fields}\t{line}\n" if ord_column else f"{prefix}{fields}\n"
            span.add(at)
    except CsvImportError as exc:
        errors.extend(exc.errors)


def _id_conflicts(conn: Connection, rows: str, params: dict[str, Any], errors: list[RowError]) -> tuple[int, int]:
    """Ids given twice with different content among the staged rows ``rows`` (a FROM item of ours with
    source_raw_id, payload_hash and line_number): the errors of the first ``MAX_ERRORS_KEPT`` appended to
    ``errors``; returns (distinct ids, ids given with different content)."""
    records, conflicts = conn.execute(sa.text(
        "SELECT count(*), count(*) FILTER (WHERE conflict) FROM (SELECT min(payload_hash) <> max(payload_hash) AS "
        f"conflict FROM {rows} GROUP BY source_raw_id) ids"), params).one()
    if conflicts:
        errors.extend(_conflicting_id(r.line_number, r.source_raw_id, r.first_line) for r in conn.execute(sa.text(
            f"""WITH r AS (SELECT source_raw_id, payload_hash, line_number FROM {rows})
                SELECT t.line_number, t.source_raw_id, f.line_number AS first_line FROM r t
                JOIN (SELECT DISTINCT ON (source_raw_id) source_raw_id, payload_hash, line_number FROM r
                      ORDER BY source_raw_id, line_number) f USING (source_raw_id)
                WHERE t.payload_hash <> f.payload_hash ORDER BY t.line_number LIMIT {MAX_ERRORS_KEPT}"""), params))
    return records, conflicts


# The first COPY straight into raw_records ends after this many rows (the next ones are longer, CopyLines): a file
# imported again is found out (and goes through the temporary table) after that much work.
DIRECT_FIRST_SEGMENT = 2_048


def load_ledger_csv(conn: Connection, entity_id: int, file: CsvFile, *, naive_timezone: str | None = None) -> ImportResult:
    """Validate and stage a ledger CSV in one pass, all or nothing, in the caller's transaction; memory stays flat
    with the file's size. Each valid row is COPied straight into ``raw_records`` as it is read, in a savepoint (the
    database inserts while the file is still being read); ids used twice with different content are found there;
    on any error the savepoint is rolled back and ``CsvImportError`` lists them. When a row turns out to be staged
    already (a file imported again, a row twice in the file), the savepoint is rolled back and the file read again
    into a temporary table, from which one insert skips the rows already staged."""
    direct = _load_ledger_direct(conn, entity_id, file, naive_timezone)
    return direct if direct is not None else _load_ledger_through_temp(conn, entity_id, file, naive_timezone)


def _load_ledger_direct(conn: Connection, entity_id: int, file: CsvFile, naive_timezone: str | None) -> ImportResult | None:
    """``load_ledger_csv`` straight into raw_records; None (nothing done) when a row is staged already, the file
    is UTF-16 or it changed while it was read."""
    try:
        run_file = RunFile(name=file.name, hash=_hash_before_reading(file))
    except OSError:
        run_file = RunFile(name=file.name)
    if run_file.hash is None:
        return None
    errors: list[RowError] = []
    hasher = hashlib.sha256()
    span = _Span()
    savepoint = conn.begin_nested()
    try:
        after = last_raw_record_id(conn)
        run_id = start_run(conn, entity_id, SOURCE, LEDGER_STREAM, file=run_file)
        prefix = raw_records_copy_prefix(entity_id, SOURCE, LEDGER_STREAM, run_id, run_file)
        with CopyLines(conn, "raw_records", RAW_RECORDS_RUN_COLUMNS + RAW_RECORDS_RECORD_COLUMNS,
                       segment_rows=DIRECT_FIRST_SEGMENT) as out:
            out.write_lines(_ledger_copy_lines(file, naive_timezone, errors, hasher, span, prefix))
        if hasher.hexdigest() != run_file.hash:  # not UTF-8 after all, or changed since it was hashed
            savepoint.rollback()
            return None
        _, conflicts = _id_conflicts(conn, "raw_records WHERE id > :after AND ingestion_run_id = :run",
                                     dict(after=after, run=run_id), errors)
        if errors:
            raise _refuse(file, errors, max(0, conflicts - MAX_ERRORS_KEPT))
        mark_staged(conn, entity_id, SOURCE, LEDGER_STREAM, span.rows, span.first)
        finish_run(conn, run_id, seen=span.rows, inserted=span.rows)
    except Exception as exc:
        savepoint.rollback()
        if already_staged(exc):
            return None
        raise
    savepoint.commit()
    return ImportResult(file.name, "ledger", span.rows, span.rows, run_id, span.first, span.last)


def _load_ledger_through_temp(conn: Connection, entity_id: int, file: CsvFile,
                              naive_timezone: str | None) -> ImportResult:
    """``load_ledger_csv`` through a temporary table, for a file with rows already staged."""
    errors: list[RowError] = []
    hasher = hashlib.sha256()
    span = _Span()
    table, _ = create_raw_records_temp(conn)
    try:
        with CopyLines(conn, table, RAW_RECORDS_RECORD_COLUMNS + ("ord",)) as out:
            out.write_lines(_ledger_copy_lines(file, naive_timezone, errors, hasher, span, ord_column=True))
        records, conflicts = _id_conflicts(conn, table, {}, errors)
        if errors:
            raise _refuse(file, errors, max(0, conflicts - MAX_ERRORS_KEPT))
    except CsvImportError:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        raise
    run_file = RunFile(name=file.name, hash=hasher.hexdigest())
    run_id = start_run(conn, entity_id, SOURCE, LEDGER_STREAM, rows=records, file=run_file)
    inserted = insert_raw_records_from_temp(conn, entity_id, SOURCE, LEDGER_STREAM, run_id, file=run_file,
                                            in_file_duplicates=records < span.rows)
    finish_run(conn, run_id, seen=records, inserted=inserted)
    return ImportResult(file.name, "ledger", records, inserted, run_id, span.first, span.last)


def load_balances_csv(conn: Connection, entity_id: int, file: CsvFile, *, naive_timezone: str | None = None) -> ImportResult:
    """``load_ledger_csv`` for a balances CSV: a balance reported twice for one account, asset and instant with
    different quantities is refused."""
    errors: list[RowError] = []
    hasher = hashlib.sha256()
    span = _Span()
    copied = 0
    table, columns = create_balance_snapshots_temp(conn)
    try:
        with copy_writer(conn, table, columns) as write:
            try:
                for line, raw in _records(file, BALANCE_COLUMNS, BALANCE_ACCEPTED, errors, hasher):
                    checked = _check_balance_row(raw, line, naive_timezone, errors)
                    if checked is None:
                        continue
                    row = checked[0]
                    write((row.account, row.account_type, row.sub_account, row.occurred_at, json.dumps(row.balances),
                           json.dumps(row.payload), row.payload_hash, line, copied))
                    copied += 1
                    span.add(row.occurred_at)
            except CsvImportError as exc:
                errors.extend(exc.errors)
        # a balance is {asset: exact text}; the same key reported with another quantity is a conflict
        found = conn.execute(sa.text(
            f"""WITH e AS (SELECT t.ord, t.line_number, t.account, t.account_type, t.sub_account, t.snapshot_time,
                                  upper(b.key) AS asset, b.value::numeric AS quantity
                           FROM {table} t, jsonb_each_text(t.balances) b),
                     f AS (SELECT DISTINCT ON (account, account_type, sub_account, snapshot_time, asset) *
                           FROM e ORDER BY account, account_type, sub_account, snapshot_time, asset, ord)
                SELECT e.line_number, e.asset, e.account, e.snapshot_time, f.line_number AS first_line
                FROM e JOIN f USING (account, account_type, sub_account, snapshot_time, asset)
                WHERE e.quantity <> f.quantity ORDER BY e.ord LIMIT {MAX_ERRORS_KEPT}""")).all()
        errors.extend(_conflicting_balance(r.line_number, r.asset, r.account, r.snapshot_time, r.first_line)
                      for r in found)
        if errors:
            raise _refuse(file, errors)
    except CsvImportError:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        raise
    run_file = RunFile(name=file.name, hash=hasher.hexdigest())
    run_id = start_run(conn, entity_id, SOURCE, BALANCES_STREAM, rows=copied, file=run_file)
    inserted = insert_balance_snapshots_from_temp(conn, entity_id, SOURCE, run_id, file=run_file)
    finish_run(conn, run_id, seen=copied, inserted=inserted)
    return ImportResult(file.name, "balances", copied, inserted, run_id, span.first, span.last)


def import_csv(conn: Connection, entity_id: int, kind: str, file: CsvFile, *,
               naive_timezone: str | None = None) -> ImportResult:
    """Validate and stage one file of ``kind`` (``CSV_KINDS``: 'ledger', 'balances' or an exchange export), all or
    nothing."""
    if kind == "ledger":
        return load_ledger_csv(conn, entity_id, file, naive_timezone=naive_timezone)
    if kind == "balances":
        return load_balances_csv(conn, entity_id, file, naive_timezone=naive_timezone)
    from ingestion.exchange_exports import EXPORT_KINDS

    if kind in EXPORT_KINDS:
        return EXPORT_KINDS[kind][1](conn, entity_id, file, naive_timezone)
    raise ValueError(f"unknown CSV kind {kind!r} (expected one of {', '.join(CSV_KINDS)})")


CSV_KINDS = ("ledger", "balances", "binance-export", "kraken-ledgers", "coinbase-exchange", "coinbase", "nexo")
