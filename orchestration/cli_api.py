"""``coinfrs journal``: the general-ledger accounts the read API's journal entries post to, per entity;
``coinfrs entity``: an entity's settings the read API uses (its reporting currency)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Journal entries: the general-ledger account of each role, per entity.", no_args_is_help=True)
console = Console()

EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")]


def _entity(conn, ref: str):
    from warehouse.entities import EntityNotFound, resolve_entity

    try:
        return resolve_entity(conn, ref)
    except EntityNotFound as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


@app.command("accounts")
def journal_accounts(entity: EntityOpt) -> None:
    """Show the general-ledger account of each role (the entity's mapping over the defaults)."""
    from warehouse.db import get_engine
    from warehouse.journal import load_account_map

    with get_engine().connect() as conn:
        mapping = load_account_map(conn, _entity(conn, entity).id)
    table = Table("role", "code", "name")
    for role, account in mapping.items():
        table.add_row(role, account.code, account.name)
    console.print(table)


@app.command("set-account")
def journal_set_account(
    entity: EntityOpt,
    role: Annotated[str, typer.Option(help="inventory | clearing | realized_gain | fee_expense | income")],
    code: Annotated[str, typer.Option(help="General-ledger account number, e.g. 1400.")],
    name: Annotated[str, typer.Option(help="General-ledger account name.")],
) -> None:
    """Map a journal role to one of the entity's general-ledger accounts."""
    from warehouse.db import get_engine
    from warehouse.journal import write_account_mapping

    with get_engine().begin() as conn:
        record = _entity(conn, entity)
        try:
            account = write_account_mapping(conn, record.id, role, code, name)
        except ValueError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
    console.print(f"{record.name}: {account.role} -> {account.code} {account.name}", highlight=False)


entity_app = typer.Typer(help="Entities: list them, show one, set its reporting currency or holding-period rule.",
                         no_args_is_help=True)


@entity_app.command("list")
def entity_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every entity with its id, timezone, reporting currency and latest close."""
    import json

    import sqlalchemy as sa

    from warehouse.db import get_engine

    with get_engine().connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.text(
            """SELECT e.id, e.name, e.timezone, e.reporting_currency, max(c.date) AS latest_close
               FROM entities e LEFT JOIN closes c ON c.entity_id = e.id GROUP BY e.id ORDER BY e.id""")).mappings()]
    for row in rows:
        row["latest_close"] = row["latest_close"].isoformat() if row["latest_close"] else None
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        console.print("no entities yet: `coinfrs import-csv --entity NAME ...` creates one", highlight=False)
    for row in rows:
        console.print(f"{row['id']:>4}  {row['name']}  ({row['timezone']}, {row['reporting_currency']}; latest close "
                      f"{row['latest_close'] or 'none'})", highlight=False)


@entity_app.command("show")
def entity_show(entity: EntityOpt) -> None:
    """Show the entity's id, timezone, reporting currency and holding-period rule."""
    from warehouse.db import get_engine

    with get_engine().connect() as conn:
        record = _entity(conn, entity)
    console.print(f"{record.name} (id {record.id}): timezone {record.timezone}, reporting currency "
                  f"{record.reporting_currency}, holding rule {record.holding_rule}", highlight=False)


@entity_app.command("set-holding-rule")
def entity_set_holding_rule(
    entity: EntityOpt,
    rule: Annotated[str, typer.Option("--rule", help="us (long-term when disposed after the anniversary of the "
                                                     "acquisition day, the default) or elapsed (more than 365 days).")],
) -> None:
    """Set the holding-period rule of the entity's cost-basis books (docs/cost-basis.md, "Holding period")."""
    from transforms.pnl import write_holding_rule
    from warehouse.db import get_engine

    with get_engine().begin() as conn:
        record = _entity(conn, entity)
        try:
            span = write_holding_rule(conn, record, rule)
        except ValueError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
    new = rule.strip().lower()
    console.print(f"{record.name}: holding rule {record.holding_rule} -> {new}", highlight=False)
    if span is not None:
        console.print(f"[yellow]note:[/] the stored books of {span[0]} .. {span[1]} follow the old rule until those "
                      f"days are closed again: coinfrs close --entity {record.name} --from {span[0]} --to {span[1]}",
                      highlight=False)


@entity_app.command("set-currency")
def entity_set_currency(
    entity: EntityOpt,
    currency: Annotated[str, typer.Option("--currency", "-c", help="USD, EUR or GBP.")],
) -> None:
    """Set the currency the read API values the entity's positions in (/positions without ?currency=)."""
    from warehouse.catalog import fx_rate_days, write_reporting_currency
    from warehouse.db import get_engine
    from warehouse.reports import ReportParameterError

    with get_engine().begin() as conn:
        record = _entity(conn, entity)
        try:
            code = write_reporting_currency(conn, record.id, currency)
        except ReportParameterError as exc:
            console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
            raise typer.Exit(1) from None
        days = fx_rate_days(conn, record.id, code)
    console.print(f"{record.name}: reporting currency {record.reporting_currency} -> {code}", highlight=False)
    if code != "USD" and days == 0:
        console.print(f"[yellow]note:[/] no USD rate of {code} is stored for {record.name} yet: positions show "
                      f"valuation no_fx_rate until `coinfrs prices fetch` (COINFRS_PRICE_CURRENCIES includes {code}) "
                      f"or `coinfrs prices import` stores one", highlight=False)
    elif code != "USD":
        console.print(f"{days} day(s) with a USD rate of {code} stored", highlight=False)
