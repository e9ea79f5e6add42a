"""Exchange CSV exports for accounts without API access: Binance "Transaction History".

Binance's export has one row per balance change: ``User_ID, UTC_Time, Account, Operation, Coin, Change,
Remark``. Each row is staged as it is (source ``binance_export``, stream ``transaction_history``, account
``Binance <User_ID>``) and becomes one leg (transforms/exchange_export_mapping.py). The file is validated first:
every row that cannot be read is reported by line and field, and nothing is staged (all or nothing).

The export carries no record id: a row's id is the hash of its content plus its occurrence number among
identical rows of the file (two identical fills in one second stay two rows), so re-importing the same file,
or an overlapping export, stages nothing twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from sqlalchemy.engine import Connection

from ingestion.csv_files import CsvFile, CsvImportError, ImportResult, RowError, StagedRow, _read_header, _run_file
from ingestion.staging import RawRecordIn, finish_run, payload_hash, start_run, write_raw_records
from warehouse.numbers import D, NotADecimal

BINANCE_EXPORT_SOURCE, BINANCE_EXPORT_STREAM = "binance_export", "transaction_history"
BINANCE_EXPORT_COLUMNS = ("user_id", "utc_time", "account", "operation", "coin", "change")
BINANCE_EXPORT_OPTIONAL = ("remark",)


def _export_time(text: str) -> datetime:
    value = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise ValueError(f"not a UTC time like 2026-01-31 23:59:59: {value!r}")


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
                D(values["change"])
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
                    D(values[name])
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
    from ingestion.staging import BalanceSnapshotIn, write_balance_snapshots

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
