"""Small ledgers for reconciliation tests: what the source really did vs what was booked.

A scenario is two ledgers in the generic ledger CSV format: ``truth`` (what happened at the
source; the balances CSV is derived from it at every day's cutoff) and ``booked`` (what reaches
Coinfrs). A planted fault is a difference between the two. Both go through the real import, the
canonical build and the Great Expectations completeness check against PostgreSQL.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from ingestion.csv_files import LEDGER_COLUMNS, CsvFile, import_csv
from transforms.ledger_mapping import map_ledger_record
from warehouse.entities import get_or_create_entity

HEADER = (*LEDGER_COLUMNS, "account_type", "sub_account")
START = date(2026, 1, 1)


@dataclass(frozen=True)
class Row:
    id: str
    timestamp: str
    action: str
    asset: str
    quantity: str
    account: str
    account_type: str = "spot"
    unit_price_usd: str = ""
    fee_asset: str = ""
    fee_amount: str = ""
    quote_asset: str = ""
    quote_quantity: str = ""
    tx_hash: str = ""
    sub_account: str = ""

    def payload(self) -> dict[str, str]:
        values = dict(self.__dict__)
        values.update(external_id="", notes="")
        return {k: values.get(k, "") for k in HEADER}


def ts(day: int, hhmm: str = "12:00") -> str:
    return f"{(START + timedelta(days=day - 1)).isoformat()}T{hhmm}:00Z"


def ledger_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for row in rows:
        payload = row.payload()
        writer.writerow([payload[k] for k in HEADER])
    return buffer.getvalue()


def balances_csv(truth: list[Row], days: int, *, rounding: dict[str, str] | None = None) -> str:
    """The source's balance of every (account, asset) held, at each day's cutoff, from the true ledger."""
    legs = []
    for row in truth:
        when = datetime.fromisoformat(row.timestamp.replace("Z", "+00:00"))
        for leg in map_ledger_record(row.payload()):
            legs.append((when, (row.account, leg.account_type or "spot", row.sub_account), leg.asset, leg.quantity))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("timestamp", "account", "account_type", "sub_account", "asset", "quantity"))
    for day in range(1, days + 1):
        cutoff = datetime.combine(START + timedelta(days=day), datetime.min.time(), tzinfo=timezone.utc)
        totals: dict[tuple, Decimal] = {}
        for when, account, asset, qty in legs:
            if when <= cutoff:
                totals[(account, asset)] = totals.get((account, asset), Decimal(0)) + qty
        for ((name, kind, sub), asset), qty in sorted(totals.items()):
            if rounding and asset in rounding:
                qty = qty.quantize(Decimal(rounding[asset]))
            writer.writerow((cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"), name, kind, sub, asset, format(qty, "f")))
    return buffer.getvalue()


def stage(engine, entity_name: str, booked: list[Row], truth: list[Row], days: int, **kwargs) -> int:
    with engine.begin() as conn:
        entity = get_or_create_entity(conn, entity_name)
        import_csv(conn, entity.id, "ledger", CsvFile("ledger.csv", ledger_csv(booked)))
        import_csv(conn, entity.id, "balances", CsvFile("balances.csv", balances_csv(truth, days, **kwargs)))
    return entity.id


def reconcile(engine, database_url: str, entity_name: str, days: int):
    """Canonical build and completeness (with causes) for days 1..days; returns the stored breaks."""
    from reconciliation.completeness import check_completeness, write_completeness
    from transforms.canonical import build_canonical
    from warehouse.entities import resolve_entity
    from warehouse.reports import list_breaks

    end = START + timedelta(days=days - 1)
    with engine.begin() as conn:
        entity = resolve_entity(conn, entity_name)
        build_canonical(conn, entity, START, end)
    result = check_completeness(database_url, entity, START, end)  # GX reads through its own connection: committed rows
    with engine.begin() as conn:
        write_completeness(conn, entity, result, run_id=None)
    with engine.connect() as conn:
        return list_breaks(conn, entity.id, START, end)


def funded(account: str = "Kraken", account_type: str = "spot") -> list[Row]:
    return [Row("F1", ts(1, "00:05"), "INCOME", "USD", "1000000", account, account_type, unit_price_usd="1")]


def without(rows: list[Row], *ids: str) -> list[Row]:
    return [r for r in rows if r.id not in ids]


def changed(rows: list[Row], row_id: str, **values: str) -> list[Row]:
    return [replace(r, **values) if r.id == row_id else r for r in rows]
