"""`coinfrs prices`: fetch, import and inspect prices with their provenance. Thin: calls ingestion/transforms."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

prices_app = typer.Typer(help="Prices with provenance: CoinGecko, exchange candles, manual files; FX rates.",
                         no_args_is_help=True)

EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")]


def _cli():
    from orchestration import cli  # the shared helpers (_fail, _engine, consoles); loaded by the time a command runs

    return cli


@prices_app.command("fetch")
def prices_fetch(
    entity: EntityOpt,
    date_from: Annotated[str, typer.Option("--from", help="First close day, YYYY-MM-DD.")],
    date_to: Annotated[str, typer.Option("--to", help="Last close day, YYYY-MM-DD.")],
    source: Annotated[list[str], typer.Option("--source", help="coingecko, exchange or all (repeatable).")] = ["all"],
    asset: Annotated[Optional[list[str]], typer.Option("--asset", help="Only these assets (default: the ones held).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts: per asset and source, the days "
                                                         "cached, fetched and missing; the totals.")] = False,
) -> None:
    """Fetch the day-close prices (and EUR/GBP rates) missing from the prices table; cached rows are not re-fetched."""
    from ingestion.prices import PriceSourceError
    from ingestion.prices.service import SOURCE_KINDS, build_sources, fetch_prices
    from ingestion.prices.settings import get_price_settings

    cli = _cli()
    start, end = cli._parse_day(date_from, "--from"), cli._parse_day(date_to, "--to")
    if end < start:
        raise cli._fail(f"--to {end} is before --from {start}")
    kinds = set(SOURCE_KINDS) if "all" in source else set(source)
    if not kinds <= set(SOURCE_KINDS):
        raise cli._fail(f"--source must be coingecko, exchange or all, not {', '.join(sorted(kinds - set(SOURCE_KINDS)))}")
    settings = get_price_settings()
    try:
        sources = build_sources(settings, kinds)
    except PriceSourceError as exc:
        raise cli._fail(str(exc)) from None
    if not sources.names:
        raise cli._fail("no price source configured: set COINFRS_COINGECKO_URL and/or COINFRS_PRICE_EXCHANGE "
                        "(see docs/prices.md)")
    engine = cli._engine()
    with engine.connect() as conn:
        record = cli._entity(conn, entity)
    try:
        report = fetch_prices(engine, record, start, end, settings=settings, sources=sources, symbols=asset or None)
    except ValueError as exc:
        raise cli._fail(str(exc)) from None
    if as_json:
        print(json.dumps({"entity": record.name, "from": start.isoformat(), "to": end.isoformat(),
                          "rows_written": report.rows_written, "flagged": report.flagged,
                          "positions_repriced": report.positions_repriced,
                          "outcomes": [dataclasses.asdict(o) for o in report.outcomes]}))
        if report.errors:
            raise cli._fail(f"{len(report.errors)} source request(s) failed: the fetch is partial")
        return
    table = Table(title=f"{record.name}: prices {start} .. {end}")
    for column in ("asset", "source", "pair", "cached days", "fetched days", "missing days", "status"):
        table.add_column(column)
    for o in report.outcomes:
        status = f"[red]error: {o.error}[/]" if o.error else (o.skipped or "ok")
        table.add_row(o.asset, o.source, o.pair or "", str(o.cached_days), str(o.fetched_days), str(o.missing_days),
                      status)
    cli.out.print(table)
    cli.out.print(f"{report.rows_written} price(s) written, {report.flagged} flagged (sources disagree), "
                  f"{report.positions_repriced} position(s) repriced", highlight=False)
    if report.errors:
        raise cli._fail(f"{len(report.errors)} source request(s) failed: the fetch is partial")


@prices_app.command("import")
def prices_import(
    entity: EntityOpt,
    file: Annotated[Path, typer.Argument(help="CSV: asset, timestamp, price_usd[, source_note].", exists=True,
                                         dir_okay=False, readable=True)],
) -> None:
    """Import manual prices (they override every other source). One bad row rejects the whole file."""
    from ingestion.csv_files import CsvFile, CsvImportError
    from ingestion.prices.manual import read_manual_prices, write_manual_prices
    from ingestion.prices.settings import get_price_settings

    cli = _cli()
    with cli._engine().begin() as conn:
        record = cli._entity(conn, entity)
        try:
            rows = read_manual_prices(CsvFile.from_path(file), timezone_name=record.timezone)
        except CsvImportError as exc:
            cli.console.print(str(exc), highlight=False, markup=False)
            raise cli._fail("nothing was imported") from None
        result = write_manual_prices(conn, record, file.name, rows,
                                     threshold=get_price_settings().price_disagreement_threshold)
    cli.console.print(f"{result.file_name}: {result.rows} manual price(s) for {record.name} "
                      f"({result.first_day} .. {result.last_day}), {result.flagged} flagged, "
                      f"{result.positions_repriced} position(s) repriced", highlight=False)


@prices_app.command("show")
def prices_show(
    entity: EntityOpt,
    asset: Annotated[str, typer.Option("--asset", help="Asset symbol (EUR/GBP show the FX rate in USD).")],
    day: Annotated[str, typer.Option("--date", help="Close day, YYYY-MM-DD.")],
    currency: Annotated[str, typer.Option(help="Also show the chosen price in this currency (USD, EUR, GBP).")] = "USD",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every price of an asset on a close day, best first, with provenance and disagreement flags."""
    import sqlalchemy as sa

    from transforms.prices import PriceNotFound, convert_from_usd, load_day_prices
    from warehouse.numbers import to_text

    cli = _cli()
    target = cli._parse_day(day, "--date")
    with cli._engine().connect() as conn:
        record = cli._entity(conn, entity)
        asset_id = conn.execute(sa.text("SELECT id FROM assets WHERE symbol = :s"), dict(s=asset.strip().upper())).scalar()
        if asset_id is None:
            raise cli._fail(f"unknown asset {asset!r}")
        rows = load_day_prices(conn, record, asset_id, target)
        converted = None
        if rows and currency.upper() != "USD":
            try:
                converted = convert_from_usd(conn, record.id, rows[0].price_usd, rows[0].ts, currency)
            except PriceNotFound as exc:
                raise cli._fail(str(exc)) from None
    items = [{"chosen": i == 0, "source": r.source, "pair": r.pair, "ts": r.ts.isoformat(), "price_usd": to_text(r.price_usd),
              "resolution": r.resolution, "fetched_at": r.fetched_at.isoformat(), "flagged": r.flagged,
              "disagreement": to_text(r.disagreement), "note": r.note} for i, r in enumerate(rows)]
    payload = {"entity": record.name, "asset": asset.upper(), "date": target.isoformat(), "prices": items}
    if converted is not None:
        payload["converted"] = {"currency": converted.currency, "price": to_text(converted.amount),
                                "rate_usd": to_text(converted.rate.price_usd) if converted.rate else None,
                                "rate_source": converted.rate.source if converted.rate else None,
                                "rate_ts": converted.rate.ts.isoformat() if converted.rate else None}
    if as_json:
        print(json.dumps(payload))
        return
    if not rows:
        raise cli._fail(f"no price of {asset.upper()} on {target} for {record.name}")
    cli.out.print(f"{record.name}: {asset.upper()} on {target}, best first (manual > trade > peg > coingecko > exchange > ledger)",
                  highlight=False)
    for item in items:
        flag = (f"[bold yellow]FLAGGED[/]: sources spread {item['disagreement']}" if item["flagged"]
                else f"spread {item['disagreement']}" if item["disagreement"] is not None else "single source")
        cli.out.print(f"{'→' if item['chosen'] else ' '} [bold]{item['price_usd']}[/] USD  {item['source']}  "
                      f"pair {item['pair'] or '-'}  at {item['ts']} ({item['resolution']})", highlight=False)
        cli.out.print(f"    fetched {item['fetched_at']} · {flag}" + (f" · note: {item['note']}" if item["note"] else ""),
                      highlight=False)
    if converted is not None:
        c = payload["converted"]
        cli.out.print(f"in {c['currency']}: {c['price']} (1 {c['currency']} = {c['rate_usd']} USD, {c['rate_source']} "
                      f"at {c['rate_ts']})", highlight=False)


@prices_app.command("missing")
def prices_missing(
    entity: EntityOpt,
    date_from: Annotated[Optional[str], typer.Option("--from", help="First close day, YYYY-MM-DD (default: all).")] = None,
    date_to: Annotated[Optional[str], typer.Option("--to", help="Last close day, YYYY-MM-DD (default: all).")] = None,
    method: Annotated[str, typer.Option(help="A stored book: configured, or fifo.")] = "configured",
    pool: Annotated[str, typer.Option(help="configured, or for fifo: universal | account.")] = "configured",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The figures the close could not price (what makes a close `unpriced`): acquisitions, disposals, third-asset
    fees and open positions that needed a fair value and had none."""
    from datetime import date

    from transforms.pnl_reports import list_missing_prices
    from warehouse.reports import ReportParameterError

    cli = _cli()
    start = cli._parse_day(date_from, "--from") if date_from else date(1970, 1, 1)
    end = cli._parse_day(date_to, "--to") if date_to else date(9999, 12, 31)
    with cli._engine().connect() as conn:
        record = cli._entity(conn, entity)
        try:
            items = list_missing_prices(conn, record.id, start, end, method, pool)
        except ReportParameterError as exc:
            raise cli._fail(exc.message) from None
    if as_json:
        print(json.dumps({"entity": record.name, "from": date_from, "to": date_to, "method": method, "pool": pool,
                          "missing_prices": items}))
        return
    if not items:
        cli.out.print(f"{record.name}: every figure of the {method}:{pool} book is priced", highlight=False)
        return
    table = Table(title=f"{record.name}: missing prices ({method}:{pool} book)")
    for column in ("date", "what", "asset", "account", "leg", "needed at", "quantity", "effect"):
        table.add_column(column, justify="right" if column == "quantity" else "left")
    for i in items:
        table.add_row(i["date"], i["what"], i["asset"], i["account"] or "(universal pool)",
                      str(i["leg_id"]) if i["leg_id"] is not None else "", i["at"], i["quantity"], i["effect"])
    cli.out.print(table)
    days = sorted({i["date"] for i in items})
    cli.out.print(f"{len(items)} missing price(s) on {len(days)} day(s); import them (`coinfrs prices import`) or fetch "
                  "them (`coinfrs prices fetch`), then close those days again", highlight=False)
