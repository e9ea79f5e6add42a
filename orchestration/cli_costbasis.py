"""`coinfrs pnl ...` cost-basis commands: book configuration, what-if comparison, in-memory compute on
ledger files, open lots, roll-forward and shortfalls. Thin: every command calls transforms/ and prints."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from orchestration.cli_output import fail
from rich.table import Table

pnl_commands = typer.Typer()
book_app = typer.Typer(help="The entity's configured cost-basis book (method and pool per effective date).",
                       no_args_is_help=True)
pnl_commands.add_typer(book_app, name="book")

console = Console(stderr=True)
out = Console()
EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CurrencyOpt = Annotated[Optional[str], typer.Option(
    "--currency", help="Reporting currency: USD, EUR or GBP (default: the entity's reporting currency).")]


_fail = fail  # orchestration/cli_output.py


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


def _emit_json(data: Any) -> None:
    text = json.dumps(data)
    out.print_json(text) if sys.stdout.isatty() else print(text)


def _connect(write: bool = False):
    from warehouse.db import get_engine

    engine = get_engine()
    return engine.begin() if write else engine.connect()


def _entity(conn, ref: str):
    from warehouse.entities import EntityNotFound, resolve_entity

    try:
        return resolve_entity(conn, ref)
    except EntityNotFound as exc:
        raise _fail(str(exc)) from None


def _report(entity_ref: str, build):
    """Resolve the entity, run ``build(conn, entity)``; bad parameters and tie-out failures exit 1 with the reason."""
    from transforms.cost_basis import TieOutError
    from warehouse.reports import ReportParameterError

    with _connect() as conn:
        record = _entity(conn, entity_ref)
        try:
            return record, build(conn, record)
        except ReportParameterError as exc:
            raise _fail(f"--{exc.field}: {exc.message}") from None
        except TieOutError as exc:
            raise _fail(str(exc)) from None


def print_fx(extra: dict[str, Any]) -> None:
    """One line on the FX rates a report in EUR/GBP used (the JSON output lists each with its provenance)."""
    fx = extra.get("fx")
    if fx:
        rates = fx["rates"]
        span = f"{rates[0]['ts']} .. {rates[-1]['ts']}" if rates else "none"
        console.print(f"{fx['currency']}: {fx['rates_used']} {fx['pair']} rates used ({span}; sources "
                      f"{', '.join(fx['sources']) or '-'}); --json lists each rate with its provenance", highlight=False)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("asset", "account", "date", "book", "kind") else "right")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    out.print(table)


# ---------------------------------------------------------------- book configuration


@book_app.command("set")
def book_set(
    entity: EntityOpt,
    method: Annotated[str, typer.Option(help="fifo, lifo, hifo, lofo or average.")],
    pool: Annotated[str, typer.Option(help="universal (entity-wide) or account (per wallet).")],
    effective_from: Annotated[Optional[str], typer.Option("--from", help="First close day it applies to; omitted: "
                                                                          "from the beginning.")] = None,
) -> None:
    """Set the entity's method and pool from a date. Open lots carry over; reclose the days from that date."""
    from transforms.pnl import load_book_schedule, write_book_period

    day = _day(effective_from, "--from") if effective_from else None
    with _connect(write=True) as conn:
        record = _entity(conn, entity)
        try:
            write_book_period(conn, record.id, method, pool, day)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        periods = load_book_schedule(conn, record.id)
    console.print(f"{record.name}: " + " -> ".join(f"{p.label} from {p.effective_from}" if p.effective_from else p.label
                                                   for p in periods), highlight=False)
    if day:
        console.print(f"reclose from {day} to rebook: coinfrs close --entity {record.name} --from {day} --to <last day>",
                      highlight=False)


@book_app.command("show")
def book_show(entity: EntityOpt, as_json: JsonOpt = False) -> None:
    """The entity's configured book: method and pool per effective date."""
    from transforms.pnl import load_book_schedule

    with _connect() as conn:
        record = _entity(conn, entity)
        periods = load_book_schedule(conn, record.id)
    rows = [{"from": p.effective_from.isoformat() if p.effective_from else None, "method": p.method, "pool": p.pool}
            for p in periods]
    if as_json:
        _emit_json({"entity": record.name, "periods": rows})
        return
    _table(f"{record.name}: configured book", rows, ["from", "method", "pool"])


# ---------------------------------------------------------------- reports


@pnl_commands.command("compare")
def compare(
    entity: EntityOpt,
    books: Annotated[str, typer.Option(help="Comma-separated method:pool books; the first is the base. "
                                             "'configured' is the entity's configured book.")],
    date_from: Annotated[str, typer.Option("--from")],
    date_to: Annotated[str, typer.Option("--to")],
    currency: CurrencyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What-if: realized PnL of several books over the same legs, and the difference per disposal."""
    from transforms.pnl_reports import compare_books, parse_books

    start, end = _day(date_from, "--from"), _day(date_to, "--to")
    record, report = _report(entity, lambda conn, e: compare_books(conn, e, parse_books(books), start, end, currency))
    if as_json:
        _emit_json(report)
        return
    print_fx(report)
    _table(f"{record.name}: realized PnL {start} .. {end} by book (base {report['base']}), {report['currency']}",
           report["books"],
           ["book", "schedule", "realized_gain", "difference", "disposals", "shortfalls"])
    labels = [b["book"] for b in report["books"]]
    rows = [{**{k: d[k] for k in ("date", "account", "asset", "kind", "quantity", "proceeds")},
             **{label: d["realized_gain"][label] for label in labels},
             **{f"Δ {label}": d["difference"][label] for label in labels[1:]}}
            for d in report["disposals"] if any(v != "0" for v in d["difference"].values())]
    _table(f"disposals whose gain differs from {labels[0]} ({len(rows)} of {len(report['disposals'])})", rows[-200:],
           ["date", "account", "asset", "kind", "quantity", "proceeds", *labels, *[f"Δ {l}" for l in labels[1:]]])


@pnl_commands.command("compute")
def compute(
    ledger: Annotated[list[Path], typer.Option("--ledger", help="Ledger CSV file (repeat for several).", exists=True,
                                               dir_okay=False, readable=True)],
    method: Annotated[str, typer.Option(help="fifo, lifo, hifo, lofo or average.")] = "fifo",
    pool: Annotated[str, typer.Option(help="universal or account.")] = "universal",
    date_from: Annotated[Optional[str], typer.Option("--from", help="First disposal day (default: the first leg's).")] = None,
    date_to: Annotated[Optional[str], typer.Option("--to", help="Last disposal day (default: the last leg's).")] = None,
    timezone: Annotated[Optional[str], typer.Option("--timezone", help="Timezone of naive timestamps.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the engine on ledger CSV files in memory (no database): the keys of `pnl realized`, plus `seconds`."""
    from ingestion.csv_files import CsvFile, CsvImportError
    from transforms.cost_basis import compute_book, validate_book
    from transforms.ledger_books import map_ledger_files
    from transforms.pnl_reports import currency_keys, summarize_realized

    started = time.perf_counter()
    try:
        validate_book(method, pool)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        mapped = map_ledger_files([CsvFile.from_path(p) for p in ledger], naive_timezone=timezone)
    except CsvImportError as exc:
        raise _fail(str(exc)) from None
    if not mapped.legs:
        raise _fail("the ledger files have no rows")
    days = [leg.close_date for leg in mapped.legs]
    start = _day(date_from, "--from") if date_from else min(days)
    end = _day(date_to, "--to") if date_to else max(days)
    book = compute_book(mapped.legs, method=method, pool=pool)
    summary = summarize_realized(book, ", ".join(p.name for p in ledger), start, end, method, pool)
    summary.update(currency_keys("USD", None))  # a file has no FX rates: USD, like its ledger values
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["legs"] = len(mapped.legs)
    summary["shortfalls"] = len(book.shortfalls)
    rules: dict[str, int] = {}
    for valuation in book.valuations.values():  # each trade's one value: which rule found it (transforms/events.py)
        rules[valuation.rule] = rules.get(valuation.rule, 0) + 1
    summary["trades_valued_by"] = dict(sorted(rules.items()))
    if as_json:
        _emit_json(summary)
        return
    _table(f"realized PnL {start} .. {end} ({method}, {pool} pool), in memory", [
        {"figure": k, "value": v} for k, v in summary.items()], ["figure", "value"])


@pnl_commands.command("breakdown")
def breakdown(
    entity: EntityOpt,
    date_from: Annotated[str, typer.Option("--from")],
    date_to: Annotated[str, typer.Option("--to")],
    by: Annotated[str, typer.Option(help="asset, account, term, year, quarter, month or day.")] = "asset",
    method: Annotated[str, typer.Option(help="fifo, lifo, hifo, lofo, average or configured.")] = "configured",
    pool: Annotated[str, typer.Option(help="universal or account.")] = "universal",
    currency: CurrencyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Realized PnL of a book by asset, account, term or period, in the reporting currency."""
    from transforms.pnl_reports import realized_breakdown

    start, end = _day(date_from, "--from"), _day(date_to, "--to")
    record, (rows, extra) = _report(entity, lambda conn, e: realized_breakdown(conn, e, start, end, by, method, pool,
                                                                               currency))
    if as_json:
        _emit_json({"rows": rows, **extra})
        return
    print_fx(extra)
    _table(f"{record.name}: realized PnL {start} .. {end} by {by} ({method}:{pool}), {extra['currency']}", rows,
           list(rows[0]) if rows else [by])


@pnl_commands.command("unrealized")
def unrealized_command(
    entity: EntityOpt,
    day: Annotated[str, typer.Option("--date", help="The close day.")],
    method: Annotated[str, typer.Option(help="fifo, lifo, hifo, lofo, average or configured.")] = "configured",
    pool: Annotated[str, typer.Option(help="universal or account.")] = "configured",
    currency: CurrencyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Unrealized PnL at a close per pool and asset: basis, close price, market value, gain, in the reporting currency."""
    from transforms.pnl_reports import unrealized

    target = _day(day, "--date")
    record, (rows, extra) = _report(entity, lambda conn, e: unrealized(conn, e, target, method, pool, currency))
    if as_json:
        _emit_json({"rows": rows, **extra})
        return
    print_fx(extra)
    shown = [{**r, "close_price": r["close_price"] if r["priced"] else "no price"} for r in rows]
    _table(f"{record.name}: unrealized PnL at the close of {target} ({method}:{pool}), {extra['currency']}", shown,
           ["account", "asset", "quantity", "cost_basis", "close_price", "market_value", "unrealized_gain"])
    if any(not r["priced"] for r in rows):
        out.print(f"no price: no market value and no unrealized gain (see `coinfrs prices missing --entity "
                  f"{record.name} --from {target} --to {target}`)", highlight=False)


@pnl_commands.command("excluded")
def excluded_command(entity: EntityOpt, as_json: JsonOpt = False) -> None:
    """Unverified assets (possible spam) left out of every PnL book until approved; they stay in positions."""
    from transforms.pnl_reports import list_excluded_assets

    record, rows = _report(entity, lambda conn, e: list_excluded_assets(conn, e))
    if as_json:
        _emit_json(rows)
        return
    _table(f"{record.name}: assets excluded from PnL (unverified)", rows,
           ["asset_id", "asset", "aliases", "legs", "accounts", "first_date", "last_date", "net_quantity"])
    if rows:
        console.print("approve one to include it (and rebook from its first leg): coinfrs asset approve <asset id or "
                      "symbol>", highlight=False)


@pnl_commands.command("lots")
def lots(
    entity: EntityOpt,
    day: Annotated[str, typer.Option("--date", help="The close day.")],
    method: Annotated[str, typer.Option(help="A stored book: configured (default) or fifo.")] = "configured",
    pool: Annotated[str, typer.Option(help="universal or account (for fifo).")] = "configured",
    as_json: JsonOpt = False,
) -> None:
    """Open lots at a close (stored by the close for the configured book and the FIFO reference books)."""
    from transforms.pnl_reports import list_open_lots

    target = _day(day, "--date")
    record, rows = _report(entity, lambda conn, e: list_open_lots(conn, e.id, target, method, pool))
    if as_json:
        _emit_json(rows)
        return
    _table(f"{record.name}: open lots at the close of {target} ({method}:{pool})", rows,
           ["account", "asset", "acquired_at", "quantity", "cost_basis", "flagged", "lot_leg_id"])


@pnl_commands.command("rollforward")
def rollforward_command(
    entity: EntityOpt,
    date_from: Annotated[str, typer.Option("--from")],
    date_to: Annotated[str, typer.Option("--to")],
    method: Annotated[str, typer.Option(help="A stored book: configured (default) or fifo.")] = "configured",
    pool: Annotated[str, typer.Option(help="universal or account (for fifo).")] = "configured",
    as_json: JsonOpt = False,
) -> None:
    """Cost-basis roll-forward per pool and asset; a pool that does not tie out is an error."""
    from transforms.pnl_reports import rollforward

    start, end = _day(date_from, "--from"), _day(date_to, "--to")
    record, rows = _report(entity, lambda conn, e: rollforward(conn, e.id, start, end, method, pool))
    if as_json:
        _emit_json(rows)
        return
    _table(f"{record.name}: cost-basis roll-forward {start} .. {end} ({method}:{pool}), USD basis", rows,
           ["account", "asset", "opening_basis", "acquired_basis", "disposed_basis", "transferred_in_basis",
            "transferred_out_basis", "closing_basis", "closing_quantity", "shortfall_quantity"])
