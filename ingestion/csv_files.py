"""CSV files: the generic ledger CSV (v1) and the balances CSV (v1).

``read_*`` functions are pure: they turn a file's text into validated rows or a list of row
errors naming line and field. ``write_*`` functions load validated rows into staging in one
transaction (COPY into a temporary table, then an insert that skips rows already there), so a
file lands whole or not at all, and importing it again changes nothing.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, RunFile, finish_run, start_run, write_balance_snapshots,
                               write_raw_records)
from transforms.ledger_mapping import V11_ALIASES
from warehouse.numbers import NotADecimal, D, parse_input_decimal, to_text

SOURCE = "csv"
LEDGER_STREAM = "ledger"
BALANCES_STREAM = "balances"

LEDGER_COLUMNS = (
    "id", "timestamp", "action", "asset", "quantity", "unit_price_usd", "fee_asset", "fee_amount",
    "quote_asset", "quote_quantity", "account", "tx_hash", "external_id", "notes",
)
# Optional superset columns: which account type / sub-account of ``account`` a row belongs to.
LEDGER_OPTIONAL_COLUMNS = ("account_type", "sub_account")
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

    def __init__(self, file_name: str, errors: Sequence[RowError]) -> None:
        self.file_name = file_name
        self.errors = list(errors)
        shown = "\n".join(f"  {e}" for e in self.errors[:50])
        more = f"\n  ... and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        super().__init__(f"{file_name}: {len(self.errors)} error(s), nothing imported\n{shown}{more}")


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


@dataclass(frozen=True)
class CsvFile:
    name: str
    text: str

    @property
    def file_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @classmethod
    def from_path(cls, path: Path | str) -> "CsvFile":
        """The file's text: UTF-8 (with or without a BOM), or UTF-16 with its BOM; anything else (Windows-1252,
        Latin-1, ...) and NUL bytes are refused with a ``CsvImportError`` saying where and how to fix it."""
        path = Path(path)
        return cls(name=path.name, text=decode_csv_bytes(path.name, path.read_bytes()))


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


def _normalized_hash(values: dict[str, str]) -> str:
    normalized = {k: v.strip() for k, v in sorted(values.items()) if v.strip() != ""}
    return hashlib.sha256(json.dumps(normalized, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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


def decode_csv_bytes(name: str, data: bytes) -> str:
    """Decode a CSV file's bytes (see ``CsvFile.from_path``)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise CsvImportError(name, [RowError(line, None, (
            f"the file is not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'}: byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start} cannot be read (Windows-1252 or Latin-1?); save it as UTF-8 (Excel: 'CSV UTF-8')"))]) from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise CsvImportError(name, [RowError(line, None, "contains a NUL byte: not a text CSV file")])
    return text


def _read_header(file: CsvFile, required: Sequence[str], optional: Sequence[str]) -> tuple[list[dict[str, str]], list[str], list[RowError]]:
    reader = csv.reader(io.StringIO(file.text))
    try:
        return _read_rows(reader, required, optional)
    except csv.Error as exc:  # a field over the csv module's limit (128 KiB), a NUL in text given directly, ...
        return [], [], [RowError(max(reader.line_num, 1), None, f"unreadable CSV: {exc}")]


def _read_rows(reader, required: Sequence[str], optional: Sequence[str]) -> tuple[list[dict[str, str]], list[str], list[RowError]]:
    try:
        header = next(reader)
    except StopIteration:
        return [], [], [RowError(1, None, "the file is empty: a header row is required")]
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
    if errors:
        return [], original, errors
    rows: list[dict[str, str]] = []
    for line_no, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(original):
            errors.append(RowError(line_no, None, f"expected {len(original)} values, found {len(values)}"))
            rows.append({})
            continue
        row = dict(zip(original, values))
        row["__line__"] = str(line_no)
        rows.append(row)
    return rows, original, errors


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


def read_ledger_csv(file: CsvFile, *, naive_timezone: str | None = None) -> list[StagedRow]:
    """Validate a ledger CSV (v1). Raises ``CsvImportError`` listing every bad row and field."""
    raw_rows, _, errors = _read_header(file, ("timestamp", "action", "asset", "quantity", "account"),
                                       LEDGER_COLUMNS + LEDGER_OPTIONAL_COLUMNS + V11_COLUMNS)
    staged: list[StagedRow] = []
    seen: dict[str, tuple[int, str]] = {}
    for raw in raw_rows:
        if not raw:
            continue
        line = int(raw["__line__"])
        payload = {k: v for k, v in raw.items() if k != "__line__"}
        row = _lower_keys(raw)
        row_errors: list[RowError] = []
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
        if not row.get("account", "").strip():
            row_errors.append(RowError(line, "account", "is required"))
        _decimal(row, "quantity", line, row_errors, required=True, positive=True)
        quoted = bool(row.get("quote_asset", "").strip() and row.get("quote_quantity", "").strip())
        _decimal(row, "unit_price_usd", line, row_errors,
                 required=action in PRICED_ACTIONS and not (quoted and action in ("BUY", "SELL")), non_negative=True)
        fee_asset = row.get("fee_asset", "").strip()
        fee = _decimal(row, "fee_amount", line, row_errors, required=bool(fee_asset), non_negative=True)
        if fee is not None and not fee_asset:
            row_errors.append(RowError(line, "fee_asset", "is required when fee_amount is given"))
        quote_asset = row.get("quote_asset", "").strip()
        quote_qty = _decimal(row, "quote_quantity", line, row_errors, required=bool(quote_asset), positive=True)
        if quote_qty is not None and not quote_asset:
            row_errors.append(RowError(line, "quote_asset", "is required when quote_quantity is given"))
        if (quote_asset or quote_qty is not None) and action not in ("BUY", "SELL"):
            row_errors.append(RowError(line, "quote_asset", f"only BUY and SELL have a quote, not {action}"))
        account_type = (row.get("account_type", "").strip().lower() or DEFAULT_ACCOUNT_TYPE)
        if account_type not in ACCOUNT_TYPES:
            row_errors.append(RowError(line, "account_type", f"unknown account type {account_type!r} (expected one of {', '.join(ACCOUNT_TYPES)})"))
        payload_hash = _normalized_hash(row)
        raw_id = row.get("id", "").strip() or row.get("external_id", "").strip() or f"sha256:{payload_hash}"
        if raw_id in seen and seen[raw_id][1] != payload_hash:
            row_errors.append(RowError(line, "id", f"id {raw_id!r} already used on line {seen[raw_id][0]} with different content"))
        if row_errors:
            errors.extend(row_errors)
            continue
        if raw_id in seen:  # the same row twice in one file: one record
            continue
        seen[raw_id] = (line, payload_hash)
        assert occurred_at is not None
        staged.append(StagedRow(line=line, source_raw_id=raw_id, account=row["account"].strip(),
                                occurred_at=occurred_at, payload=payload, payload_hash=payload_hash,
                                account_type=account_type, sub_account=row.get("sub_account", "").strip()))
    if errors:
        raise CsvImportError(file.name, sorted(errors, key=lambda e: (e.line, e.field or "")))
    return staged


def read_balances_csv(file: CsvFile, *, naive_timezone: str | None = None) -> list[StagedRow]:
    """Validate a balances CSV (v1): one reported balance per row."""
    raw_rows, _, errors = _read_header(file, BALANCE_COLUMNS, BALANCE_COLUMNS + BALANCE_OPTIONAL_COLUMNS + V11_COLUMNS)
    staged: list[StagedRow] = []
    seen: dict[tuple[str, str, str, datetime, str], tuple[int, Decimal]] = {}
    for raw in raw_rows:
        if not raw:
            continue
        line = int(raw["__line__"])
        payload = {k: v for k, v in raw.items() if k != "__line__"}
        row = _lower_keys(raw)
        row_errors: list[RowError] = []
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
        sub_account = row.get("sub_account", "").strip()
        payload_hash = _normalized_hash(row)
        if not row_errors and occurred_at is not None and quantity is not None:
            key = (account, account_type, sub_account, occurred_at, asset.upper())
            if key in seen and seen[key][1] != quantity:  # the same instant and amount spelled differently is no conflict
                row_errors.append(RowError(line, "quantity", f"{asset} of {account} at {row['timestamp'].strip()} is already reported on line {seen[key][0]} with a different quantity"))
            seen.setdefault(key, (line, quantity))
        if row_errors:
            errors.extend(row_errors)
            continue
        assert occurred_at is not None and quantity is not None
        staged.append(StagedRow(line=line, source_raw_id=f"sha256:{payload_hash}", account=account,
                                occurred_at=occurred_at, payload=payload, payload_hash=payload_hash,
                                account_type=account_type, sub_account=sub_account,
                                balances={asset: to_text(quantity) or "0"}))
    if errors:
        raise CsvImportError(file.name, sorted(errors, key=lambda e: (e.line, e.field or "")))
    return staged


# ------------------------------------------------------------------------------- loading




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


def import_csv(conn: Connection, entity_id: int, kind: str, file: CsvFile, *,
               naive_timezone: str | None = None) -> ImportResult:
    """Validate and stage one file of ``kind`` (``CSV_KINDS``: 'ledger', 'balances' or an exchange export), all or
    nothing."""
    if kind == "ledger":
        return write_ledger_rows(conn, entity_id, file, read_ledger_csv(file, naive_timezone=naive_timezone))
    if kind == "balances":
        return write_balance_rows(conn, entity_id, file, read_balances_csv(file, naive_timezone=naive_timezone))
    from ingestion.exchange_exports import EXPORT_KINDS

    if kind in EXPORT_KINDS:
        return EXPORT_KINDS[kind][1](conn, entity_id, file, naive_timezone)
    raise ValueError(f"unknown CSV kind {kind!r} (expected one of {', '.join(CSV_KINDS)})")


CSV_KINDS = ("ledger", "balances", "binance-export", "kraken-ledgers", "coinbase-exchange", "coinbase", "nexo")
