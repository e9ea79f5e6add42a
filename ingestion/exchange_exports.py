"""Exchange CSV exports for accounts without API access: Binance "Transaction History", Kraken "Ledgers",
Coinbase Exchange (Pro) account statements, Coinbase retail transaction history and Nexo's transaction export.

Binance's export has one row per balance change: ``User_ID, UTC_Time, Account, Operation, Coin, Change,
Remark``. Each row is staged as it is (source ``binance_export``, stream ``transaction_history``, account
``Binance <User_ID>``) and becomes one leg (transforms/exchange_export_mapping.py). The file is validated first:
every row that cannot be read is reported by line and field, and nothing is staged (all or nothing).

The export carries no record id: a row's id is the hash of its content plus its occurrence number among
identical rows of the file (two identical fills in one second stay two rows), so re-importing the same file,
or an overlapping export, stages nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ingestion.csv_files import (CsvFile, CsvImportError, ImportResult, RowError, StagedRow, _read_header, _run_file,
                                 parse_timestamp)
from ingestion.staging import (BalanceSnapshotIn, RawRecordIn, finish_run, payload_hash, start_run,
                               write_balance_snapshots, write_raw_records)
from warehouse.numbers import NotADecimal, parse_input_decimal

BINANCE_EXPORT_SOURCE, BINANCE_EXPORT_STREAM = "binance_export", "transaction_history"
BINANCE_EXPORT_COLUMNS = ("user_id", "utc_time", "account", "operation", "coin", "change")
BINANCE_EXPORT_OPTIONAL = ("remark",)


def _export_time(text: str, naive_timezone: str = "UTC") -> datetime:
    """An export's time (naive: in ``naive_timezone``), inside the accepted window (2009-01-03 .. tomorrow)."""
    value = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            parsed = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return parse_timestamp(parsed.isoformat(), naive_timezone)
    try:
        return parse_timestamp(value, naive_timezone)
    except ValueError as error:
        if "outside" in str(error):
            raise
        raise ValueError(f"not a time like 2026-01-31 23:59:59: {value!r}") from None


def read_binance_export(file: CsvFile) -> list[StagedRow]:
    """Validate a Binance Transaction History export. Raises ``CsvImportError`` naming every bad row and field."""
    rows, _, errors = _read_header(file, BINANCE_EXPORT_COLUMNS, BINANCE_EXPORT_OPTIONAL)
    staged: list[StagedRow] = []
    seen: dict[str, int] = {}
    for row in rows:
        if not row:
            continue
        line = int(row.pop("__line__"))
        values = {k.lower(): v.strip() for k, v in row.items()}
        row_errors: list[RowError] = []
        for name in BINANCE_EXPORT_COLUMNS:
            if not values.get(name):
                row_errors.append(RowError(line, name, "is required"))
        when = None
        if values.get("utc_time"):
            try:
                when = _export_time(values["utc_time"])
            except ValueError as error:
                row_errors.append(RowError(line, "utc_time", str(error)))
        if values.get("change"):
            try:
                parse_input_decimal(values["change"])
            except NotADecimal as error:
                row_errors.append(RowError(line, "change", str(error)))
        if row_errors or when is None:
            errors.extend(row_errors)
            continue
        payload = dict(row)  # the row as exported (original header names, exact strings)
        content = payload_hash({k: values.get(k, "") for k in (*BINANCE_EXPORT_COLUMNS, *BINANCE_EXPORT_OPTIONAL)})
        seen[content] = seen.get(content, 0) + 1
        raw_id = hashlib.sha256(f"{content}:{seen[content]}".encode()).hexdigest()[:32]
        staged.append(StagedRow(line, raw_id, f"Binance {values['user_id']}", when, payload, payload_hash(payload)))
    if errors:
        raise CsvImportError(file.name, sorted(errors, key=lambda e: (e.line, e.field or "")))
    return staged


def import_binance_export(conn: Connection, entity_id: int, file: CsvFile) -> ImportResult:
    """Validate then stage one export file, all or nothing; rows already staged are skipped."""
    rows = read_binance_export(file)
    run = start_run(conn, entity_id, BINANCE_EXPORT_SOURCE, BINANCE_EXPORT_STREAM, rows=len(rows), file=_run_file(file))
    inserted = write_raw_records(conn, entity_id, BINANCE_EXPORT_SOURCE, BINANCE_EXPORT_STREAM, [
        RawRecordIn(r.account, r.source_raw_id, r.occurred_at, r.payload, r.payload_hash, r.line) for r in rows],
        run, file=_run_file(file))
    finish_run(conn, run, seen=len(rows), inserted=inserted)
    return ImportResult(file.name, "binance-export", len(rows), inserted, run,
                        min((r.occurred_at for r in rows), default=None), max((r.occurred_at for r in rows), default=None))


# ------------------------------------------------------------------------------ Kraken ledgers export

KRAKEN_SOURCE, KRAKEN_STREAM, KRAKEN_ACCOUNT = "kraken_export", "ledgers", "Kraken"
KRAKEN_COLUMNS = ("txid", "refid", "time", "type", "asset", "amount", "fee", "balance")
KRAKEN_OPTIONAL = ("subtype", "aclass", "wallet", "amountusd")


def read_kraken_ledgers(file: CsvFile) -> tuple[list[StagedRow], list[StagedRow]]:
    """Validate a Kraken ledgers export: (ledger rows, balance rows). The balance of the last row of each
    asset and wallet per day is what Kraken reported holding then: it becomes a balance snapshot."""
    from transforms.exchange_export_mapping import kraken_account_type, kraken_asset

    rows, _, errors = _read_header(file, KRAKEN_COLUMNS, KRAKEN_OPTIONAL)
    staged: list[StagedRow] = []
    last_of_day: dict[tuple[str, str, object], StagedRow] = {}
    for row in rows:
        if not row:
            continue
        line = int(row.pop("__line__"))
        values = {k.lower(): v.strip() for k, v in row.items()}
        row_errors = [RowError(line, name, "is required") for name in ("txid", "time", "type", "asset", "amount")
                      if not values.get(name)]
        when = None
        if values.get("time"):
            try:
                when = _export_time(values["time"])
            except ValueError as error:
                row_errors.append(RowError(line, "time", str(error)))
        for name in ("amount", "fee", "balance"):
            if values.get(name):
                try:
                    parse_input_decimal(values[name])
                except NotADecimal as error:
                    row_errors.append(RowError(line, name, str(error)))
        if row_errors or when is None:
            errors.extend(row_errors)
            continue
        payload = dict(row)
        record = StagedRow(line, values["txid"], KRAKEN_ACCOUNT, when, payload, payload_hash(payload))
        staged.append(record)
        if values.get("balance"):
            account_type = kraken_account_type(values.get("wallet", ""), values["asset"])
            asset = kraken_asset(values["asset"])
            last_of_day[(account_type, asset, when.date())] = StagedRow(
                line, values["txid"], KRAKEN_ACCOUNT, when, payload, payload_hash(payload), account_type=account_type,
                balances={asset: values["balance"]})
    if errors:
        raise CsvImportError(file.name, sorted(errors, key=lambda e: (e.line, e.field or "")))
    return staged, list(last_of_day.values())


def import_kraken_ledgers(conn: Connection, entity_id: int, file: CsvFile) -> ImportResult:
    """Validate then stage one Kraken ledgers export (rows and their end-of-day balances), all or nothing."""
    rows, balances = read_kraken_ledgers(file)
    run = start_run(conn, entity_id, KRAKEN_SOURCE, KRAKEN_STREAM, rows=len(rows), file=_run_file(file))
    inserted = write_raw_records(conn, entity_id, KRAKEN_SOURCE, KRAKEN_STREAM, [
        RawRecordIn(r.account, r.source_raw_id, r.occurred_at, r.payload, r.payload_hash, r.line) for r in rows],
        run, file=_run_file(file))
    write_balance_snapshots(conn, entity_id, KRAKEN_SOURCE, [
        BalanceSnapshotIn(b.account, b.account_type, "", b.occurred_at, b.balances, b.payload, b.payload_hash, b.line)
        for b in balances], run, file=_run_file(file))
    finish_run(conn, run, seen=len(rows), inserted=inserted)
    return ImportResult(file.name, "kraken-ledgers", len(rows), inserted, run,
                        min((r.occurred_at for r in rows), default=None), max((r.occurred_at for r in rows), default=None))


# ------------------------------------------------------------------------------ shared by the exports below


def _content_id(values: dict[str, str], columns: Sequence[str], seen: dict[str, int]) -> str:
    """A row's id when the export has none: its content hash plus its occurrence among identical rows."""
    content = payload_hash({k: values.get(k, "") for k in columns})
    seen[content] = seen.get(content, 0) + 1
    return hashlib.sha256(f"{content}:{seen[content]}".encode()).hexdigest()[:32]


def _number(values: dict[str, str], name: str, line: int, errors: list[RowError], *, required: bool = True) -> None:
    text = values.get(name, "")
    if not text:
        if required:
            errors.append(RowError(line, name, "is required"))
        return
    try:
        parse_input_decimal(text)
    except NotADecimal as error:
        errors.append(RowError(line, name, str(error)))


def _time(values: dict[str, str], name: str, line: int, errors: list[RowError], naive_timezone: str | None) -> datetime | None:
    text = values.get(name, "")
    if not text:
        errors.append(RowError(line, name, "is required"))
        return None
    try:
        return _export_time(text, naive_timezone) if naive_timezone else parse_timestamp(text, None)
    except ValueError as error:
        errors.append(RowError(line, name, str(error)))
        return None


def _fail_if(file: CsvFile, errors: list[RowError]) -> None:
    if errors:
        raise CsvImportError(file.name, sorted(errors, key=lambda e: (e.line, e.field or "")))


def _entity_tz(conn: Connection, entity_id: int) -> ZoneInfo:
    name = conn.execute(sa.text("SELECT timezone FROM entities WHERE id = :e"), dict(e=entity_id)).scalar()
    return ZoneInfo(name or "UTC")


def _stage(conn: Connection, entity_id: int, file: CsvFile, source: str, stream: str, kind: str,
           rows: Sequence[StagedRow], balances: Sequence[StagedRow] = ()) -> ImportResult:
    """Stage validated rows (and reported balances) of one file in the caller's transaction."""
    run = start_run(conn, entity_id, source, stream, rows=len(rows), file=_run_file(file))
    inserted = write_raw_records(conn, entity_id, source, stream, [
        RawRecordIn(r.account, r.source_raw_id, r.occurred_at, r.payload, r.payload_hash, r.line) for r in rows],
        run, file=_run_file(file))
    if balances:
        write_balance_snapshots(conn, entity_id, source, [
            BalanceSnapshotIn(b.account, b.account_type, "", b.occurred_at, b.balances, b.payload, b.payload_hash,
                              b.line) for b in balances], run, file=_run_file(file))
    finish_run(conn, run, seen=len(rows), inserted=inserted)
    return ImportResult(file.name, kind, len(rows), inserted, run,
                        min((r.occurred_at for r in rows), default=None), max((r.occurred_at for r in rows), default=None))


# ------------------------------------------------------------------------------ Coinbase Exchange (Pro) statement

COINBASE_EXCHANGE_SOURCE, COINBASE_EXCHANGE_STREAM = "coinbase_exchange_export", "account_statement"
COINBASE_EXCHANGE_COLUMNS = ("type", "time", "amount", "balance", "amount/balance unit")
COINBASE_EXCHANGE_OPTIONAL = ("portfolio", "transfer id", "trade id", "order id")


def read_coinbase_exchange_statement(file: CsvFile, tz: ZoneInfo = ZoneInfo("UTC")) -> tuple[list[StagedRow], list[StagedRow]]:
    """Validate a Coinbase Exchange (Pro) account statement: (rows, reported balances). The ``balance`` column is
    the unit's balance after the row: the last one of each close day (in ``tz``) and unit is a balance snapshot,
    so the file alone proves it is complete (a missing row is a break on its day)."""
    rows, _, errors = _read_header(file, COINBASE_EXCHANGE_COLUMNS, COINBASE_EXCHANGE_OPTIONAL)
    staged: list[StagedRow] = []
    last: dict[tuple[str, str, object], tuple[datetime, StagedRow]] = {}
    seen: dict[str, int] = {}
    for row in rows:
        if not row:
            continue
        line = int(row.pop("__line__"))
        values = {k.lower(): v.strip() for k, v in row.items()}
        row_errors = [RowError(line, name, "is required") for name in ("type", "amount/balance unit")
                      if not values.get(name)]
        when = _time(values, "time", line, row_errors, None)
        _number(values, "amount", line, row_errors)
        _number(values, "balance", line, row_errors)
        if row_errors or when is None:
            errors.extend(row_errors)
            continue
        portfolio = values.get("portfolio", "")
        account = f"Coinbase Exchange {portfolio}" if portfolio else "Coinbase Exchange"
        payload = dict(row)
        raw_id = _content_id(values, (*COINBASE_EXCHANGE_COLUMNS, *COINBASE_EXCHANGE_OPTIONAL), seen)
        record = StagedRow(line, raw_id, account, when, payload, payload_hash(payload))
        staged.append(record)
        unit = values["amount/balance unit"].upper()
        key = (account, unit, when.astimezone(tz).date())
        if key not in last or when >= last[key][0]:  # the latest row of the day; in file order on a tie
            last[key] = (when, StagedRow(line, raw_id, account, when, payload, payload_hash(payload),
                                         account_type="spot", balances={unit: values["balance"]}))
    _fail_if(file, errors)
    return staged, [b for _, b in last.values()]


def import_coinbase_exchange_statement(conn: Connection, entity_id: int, file: CsvFile) -> ImportResult:
    rows, balances = read_coinbase_exchange_statement(file, _entity_tz(conn, entity_id))
    return _stage(conn, entity_id, file, COINBASE_EXCHANGE_SOURCE, COINBASE_EXCHANGE_STREAM, "coinbase-exchange",
                  rows, balances)


# ------------------------------------------------------------------------------ Coinbase retail transaction history

COINBASE_SOURCE, COINBASE_STREAM, COINBASE_ACCOUNT = "coinbase_export", "transaction_history", "Coinbase"
COINBASE_COLUMNS = ("timestamp", "transaction type", "asset", "quantity transacted")
COINBASE_OPTIONAL = ("id", "spot price currency", "spot price at transaction", "price currency", "price at transaction",
                     "subtotal", "total (inclusive of fees and/or spread)", "fees and/or spread", "notes")
COINBASE_MONEY = ("spot price at transaction", "price at transaction", "subtotal",
                  "total (inclusive of fees and/or spread)", "fees and/or spread")


def _skip_preamble(file: CsvFile, columns: Sequence[str]) -> tuple[CsvFile, int]:
    """The file from its header row on (Coinbase writes a few lines of text before it) and the lines skipped: the
    header is the first of the first 20 lines that names all of ``columns``."""
    lines = file.text.splitlines(keepends=True)
    for index, text in enumerate(lines[:20]):
        try:
            cells = {c.strip().lower() for c in next(csv.reader([text]), [])}
        except csv.Error:
            continue
        if set(columns) <= cells:
            return CsvFile(file.name, "".join(lines[index:])), index
    return file, 0


def read_coinbase_transactions(file: CsvFile) -> list[StagedRow]:
    """Validate a Coinbase transaction history (``Timestamp, Transaction Type, Asset, Quantity Transacted, ...``)."""
    from transforms.exchange_export_mapping import (COINBASE_TYPES, coinbase_convert_note, coinbase_money,
                                                    coinbase_trade_note)

    body, skipped = _skip_preamble(file, COINBASE_COLUMNS)
    rows, _, header_errors = _read_header(body, COINBASE_COLUMNS, COINBASE_OPTIONAL)
    errors = [RowError(e.line + skipped, e.field, e.message) for e in header_errors]
    staged: list[StagedRow] = []
    seen: dict[str, int] = {}
    ids: dict[str, int] = {}
    for row in rows:
        if not row:
            continue
        line = int(row.pop("__line__")) + skipped
        values = {k.lower(): v.strip() for k, v in row.items()}
        row_errors = [RowError(line, name, "is required") for name in ("transaction type", "asset")
                      if not values.get(name)]
        stamp = values.get("timestamp", "")
        stamp = stamp[:-4].strip() + "Z" if stamp.upper().endswith(" UTC") else stamp
        when = _time({"timestamp": stamp}, "timestamp", line, row_errors, None)
        _number({"quantity transacted": values.get("quantity transacted", "").lstrip("-")}, "quantity transacted",
                line, row_errors)
        for name in COINBASE_MONEY:
            try:
                coinbase_money(values.get(name, ""))
            except ValueError as error:
                row_errors.append(RowError(line, name, str(error)))
        kind = COINBASE_TYPES.get(" ".join(values.get("transaction type", "").lower().split()))
        notes = values.get("notes", "")
        if kind == "convert" and coinbase_convert_note(notes) is None:
            row_errors.append(RowError(line, "notes", f"a Convert needs 'Converted <qty> <asset> to <qty> <asset>', "
                                                      f"got {notes[:80]!r}"))
        if kind in ("buy", "sell") and not values.get("subtotal") and coinbase_trade_note(notes) is None:
            row_errors.append(RowError(line, "subtotal", "is required for a Buy or Sell whose notes name no quote"))
        row_id = values.get("id", "")
        if row_id and row_id in ids:
            row_errors.append(RowError(line, "id", f"id {row_id!r} already used on line {ids[row_id]}"))
        if row_errors or when is None:
            errors.extend(row_errors)
            continue
        ids.setdefault(row_id, line)
        payload = dict(row)
        raw_id = row_id or _content_id(values, (*COINBASE_COLUMNS, *COINBASE_OPTIONAL), seen)
        staged.append(StagedRow(line, raw_id, COINBASE_ACCOUNT, when, payload, payload_hash(payload)))
    _fail_if(file, errors)
    return staged


def import_coinbase_transactions(conn: Connection, entity_id: int, file: CsvFile) -> ImportResult:
    return _stage(conn, entity_id, file, COINBASE_SOURCE, COINBASE_STREAM, "coinbase", read_coinbase_transactions(file))


# ------------------------------------------------------------------------------ Nexo transactions export

NEXO_SOURCE, NEXO_STREAM, NEXO_ACCOUNT = "nexo_export", "transactions", "Nexo"
NEXO_COLUMNS = ("transaction", "type", "input currency", "input amount", "output currency", "output amount",
                "details")
NEXO_OPTIONAL = ("usd equivalent", "outstanding loan", "date / time (utc)", "date / time")
NEXO_LOCAL_TIME = "Europe/Zurich"  # the older export's "Date / Time" is Nexo's local time (CET/CEST)


def read_nexo_export(file: CsvFile, naive_timezone: str | None = None) -> list[StagedRow]:
    """Validate a Nexo transactions export. Every corrupt row is reported by line and field; nothing is staged."""
    from transforms.exchange_export_mapping import coinbase_money

    rows, header, errors = _read_header(file, NEXO_COLUMNS, NEXO_OPTIONAL)
    lowered = [h.lower() for h in header]
    time_column = "date / time (utc)" if "date / time (utc)" in lowered else "date / time"
    if header and not errors and time_column not in lowered:
        raise CsvImportError(file.name, [RowError(1, None, "header lacks column(s) date / time (utc)")])
    zone = "UTC" if time_column == "date / time (utc)" else (naive_timezone or NEXO_LOCAL_TIME)
    staged: list[StagedRow] = []
    ids: dict[str, tuple[int, str]] = {}
    for row in rows:
        if not row:
            continue
        line = int(row.pop("__line__"))
        values = {k.lower(): v.strip() for k, v in row.items()}
        row_errors = [RowError(line, name, "is required") for name in
                      ("transaction", "type", "input currency", "output currency") if not values.get(name)]
        when = _time(values, time_column, line, row_errors, zone)
        for name in ("input amount", "output amount"):
            _number(values, name, line, row_errors)
        for name in ("usd equivalent", "outstanding loan"):
            try:
                coinbase_money(values.get(name, ""))
            except ValueError as error:
                row_errors.append(RowError(line, name, str(error)))
        payload = dict(row)
        digest = payload_hash(payload)
        tx = values.get("transaction", "")
        if tx in ids and ids[tx][1] != digest:
            row_errors.append(RowError(line, "transaction", f"{tx!r} already on line {ids[tx][0]} with other content"))
        if row_errors or when is None:
            errors.extend(row_errors)
            continue
        if tx in ids:  # the same row twice: one record
            continue
        ids[tx] = (line, digest)
        staged.append(StagedRow(line, tx, NEXO_ACCOUNT, when, payload, digest))
    _fail_if(file, errors)
    return staged


def import_nexo_export(conn: Connection, entity_id: int, file: CsvFile, naive_timezone: str | None = None) -> ImportResult:
    return _stage(conn, entity_id, file, NEXO_SOURCE, NEXO_STREAM, "nexo", read_nexo_export(file, naive_timezone))


# ------------------------------------------------------------------------------ the kinds of `coinfrs import-csv`

# --kind -> (validate a file without a database, validate and stage it); both raise CsvImportError
EXPORT_KINDS: dict[str, tuple[Callable[[CsvFile, str | None], object],
                              Callable[[Connection, int, CsvFile, str | None], ImportResult]]] = {
    "binance-export": (lambda f, tz: read_binance_export(f), lambda c, e, f, tz: import_binance_export(c, e, f)),
    "kraken-ledgers": (lambda f, tz: read_kraken_ledgers(f), lambda c, e, f, tz: import_kraken_ledgers(c, e, f)),
    "coinbase-exchange": (lambda f, tz: read_coinbase_exchange_statement(f),
                          lambda c, e, f, tz: import_coinbase_exchange_statement(c, e, f)),
    "coinbase": (lambda f, tz: read_coinbase_transactions(f), lambda c, e, f, tz: import_coinbase_transactions(c, e, f)),
    "nexo": (read_nexo_export, import_nexo_export),
}
