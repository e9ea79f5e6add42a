"""The worked conversion of docs/csv-formats.md ("Worked conversion: a Kraken ledger into the ledger CSV"): the
Kraken statement, the ledger CSV written from it and the figures are read from the page; the ledger runs through the
file engine (``coinfrs pnl compute --ledger``) and the database close, and every figure of the page must come out;
the converted Kraken account ends at Kraken's own balances, as the statement imported as it is does."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from ingestion.csv_files import CsvFile, import_csv
from ingestion.exchange_exports import import_kraken_ledgers
from transforms.canonical import build_canonical
from transforms.cost_basis import compute_book
from transforms.exchange_export_mapping import kraken_asset
from transforms.ledger_books import map_ledger_files
from transforms.pnl import build_pnl
from warehouse.entities import get_or_create_entity

DOC = Path(__file__).resolve().parents[2] / "docs" / "csv-formats.md"
FIRST, LAST = date(2024, 1, 2), date(2024, 2, 1)


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## Worked conversion: a Kraken ledger"):text.index("## Balances CSV")]


def _blocks(section: str) -> list[str]:
    parts = section.split("```csv\n")[1:]
    return [p[:p.index("```")] for p in parts]


def _table(section: str, first_cells: tuple[str, ...]) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in first_cells:
            rows.append(cells)
    return rows


SECTION = _section()
KRAKEN, LEDGER = _blocks(SECTION)
DISPOSALS = [(kind, Decimal(q), Decimal(p), Decimal(b), Decimal(g))
             for kind, q, p, b, g in _table(SECTION, ("fee", "sale"))]
LOTS = {(account, Decimal(q), Decimal(b)) for account, q, b in _table(SECTION, ("Kraken", "Cold wallet"))}


def _kraken_balances() -> dict[str, Decimal]:
    last: dict[str, Decimal] = {}
    for row in csv.DictReader(io.StringIO(KRAKEN)):
        last[kraken_asset(row["asset"])] = Decimal(row["balance"])
    return last


def test_the_page_is_read() -> None:
    assert len(KRAKEN.splitlines()) == 7 and len(LEDGER.splitlines()) == 6
    assert [d[0] for d in DISPOSALS] == ["fee", "sale"] and len(LOTS) == 2


def test_the_converted_ledger_gives_the_figures_of_the_page_through_both_engines(engine) -> None:
    mapped = map_ledger_files([CsvFile("kraken-converted.csv", LEDGER)])
    for pool in ("universal", "account"):
        book = compute_book(mapped.legs, pool=pool, report_from=FIRST, report_to=LAST, keep_open_lots=True)
        assert [(d.kind, d.quantity, d.proceeds, d.cost_basis, d.realized_gain) for d in book.disposals] == DISPOSALS
        if pool == "account":
            lots = {(mapped.accounts[l.account_id], l.quantity, l.cost_basis) for l in book.open_lots if l.date == LAST}
            assert lots == LOTS
    # the withdrawal and the wallet's receipt are one transfer (amount and time), nothing else is
    assert [m.matched_by for m in mapped.transfers.matches] == ["amount_time"]

    # the converted Kraken account ends at Kraken's own balance column
    held: dict[str, Decimal] = defaultdict(Decimal)
    kraken = next(i for i, name in mapped.accounts.items() if name == "Kraken")
    for leg in mapped.legs:
        if leg.account_id == kraken:
            held[mapped.assets[leg.asset_id]] += leg.quantity
    assert dict(held) == _kraken_balances() == {"USD": Decimal("8486"), "BTC": Decimal("0.0199")}

    with engine.begin() as conn:
        entity = get_or_create_entity(conn, "converted")
        import_csv(conn, entity.id, "ledger", CsvFile("kraken-converted.csv", LEDGER))
        build_canonical(conn, entity, FIRST, LAST)
        build_pnl(conn, entity, FIRST, LAST)
        for pool in ("universal", "account"):
            stored = conn.execute(sa.text(
                """SELECT kind, quantity, proceeds, cost_basis, realized_gain FROM pnl_disposals
                   WHERE entity_id = :e AND method = 'fifo' AND pool = :p ORDER BY ts, leg_id"""),
                dict(e=entity.id, p=pool)).all()
            assert [tuple(r) for r in stored] == DISPOSALS
        lots = conn.execute(sa.text(
            """SELECT a.name, l.quantity, l.cost_basis FROM pnl_open_lots l JOIN accounts a ON a.id = l.account_id
               WHERE l.entity_id = :e AND l.method = 'fifo' AND l.pool = 'account' AND l.date = :d"""),
            dict(e=entity.id, d=LAST)).all()
        assert {tuple(r) for r in lots} == LOTS

        # the statement imported as it is (--kind kraken-ledgers) ends at the same Kraken positions
        native = get_or_create_entity(conn, "native")
        import_kraken_ledgers(conn, native.id, CsvFile("ledgers.csv", KRAKEN))
        build_canonical(conn, native, FIRST, LAST)
        positions = conn.execute(sa.text(
            """SELECT s.symbol, p.computed_quantity, p.reported_quantity FROM positions p
               JOIN assets s ON s.id = p.asset_id WHERE p.entity_id = :e AND p.date = :d"""),
            dict(e=native.id, d=LAST)).all()
    assert {r.symbol: r.computed_quantity for r in positions} == _kraken_balances()
    assert all(r.computed_quantity == r.reported_quantity for r in positions)
