"""`coinfrs entity ...`: list, create, rename, archive and show entities, and the settings the books and the read API
use (reporting currency, holding-period rule). Thin: the rules are in ``warehouse/entities.py``.

Names match case-insensitively; a name that matches nothing is refused with the closest names ("did you mean").
Exit codes: 0 done (archiving an archived entity, or unarchiving an active one, is done too); 1 refused, in one line
(no such entity, a name taken or invalid, a bad setting); 2 a usage error (a missing or unknown option).
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console

entity_app = typer.Typer(help="Entities: list, create, rename, archive; show one, set its reporting currency or "
                              "holding-period rule.", no_args_is_help=True)
out = Console()

EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="Entity name (any case) or id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _cli():
    from orchestration import cli

    return cli


def _refused(action):
    """Run ``action``; a refusal of ``warehouse.entities`` ends the command in one line with exit code 1."""
    from warehouse.entities import EntityNameError, EntityNotFound

    try:
        return action()
    except (EntityNotFound, EntityNameError, ValueError) as exc:
        raise _cli()._fail(str(exc)) from None


def _describe(record) -> str:
    state = f"archived since {record.archived_at.date()}" if record.archived else "active"
    return f"{record.name} (id {record.id}; {record.timezone}, {record.reporting_currency}; {state})"


@entity_app.command("list")
def entity_list(
    as_json: JsonOpt = False,
    include_archived: Annotated[bool, typer.Option("--all", help="Archived entities too.")] = False,
) -> None:
    """The active entities (what the daily schedule closes) with id, timezone, reporting currency and latest close;
    --all adds the archived ones."""
    from warehouse.entities import entity_summaries

    with _cli()._engine().connect() as conn:
        rows = entity_summaries(conn, include_archived=include_archived)
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        out.print("no entities yet: `coinfrs entity create --entity NAME` creates one"
                  + ("" if include_archived else " (--all lists archived ones)"), highlight=False)
    for row in rows:
        archived = f"; archived {row['archived_at'][:10]}" if row["archived"] else ""
        out.print(f"{row['id']:>4}  {row['name']}  ({row['timezone']}, {row['reporting_currency']}; latest close "
                  f"{row['latest_close'] or 'none'}{archived})", highlight=False)


@entity_app.command("create")
def entity_create(
    entity: Annotated[str, typer.Option("--entity", "-e", help="The new entity's name (unique regardless of case).")],
    timezone: Annotated[str, typer.Option("--timezone", help="Timezone of its close days (IANA name).")] = "UTC",
    as_json: JsonOpt = False,
) -> None:
    """Create an entity. Imports, sources and wallets name an existing entity; this is how one comes to exist."""
    from warehouse.entities import create_entity

    with _cli()._engine().begin() as conn:
        record = _refused(lambda: create_entity(conn, entity, timezone))
    if as_json:
        print(json.dumps({"id": record.id, "name": record.name, "timezone": record.timezone}))
        return
    out.print(f"created entity {_describe(record)}", highlight=False)


@entity_app.command("rename")
def entity_rename(
    entity: EntityOpt,
    to: Annotated[str, typer.Option("--to", help="The new name (unique regardless of case).")],
) -> None:
    """Rename an entity. Its id, data, closes and API keys stay; what names it (scripts, the inbox directory) must
    use the new name."""
    from warehouse.entities import rename_entity

    with _cli()._engine().begin() as conn:
        before = _cli()._entity(conn, entity)
        record = _refused(lambda: rename_entity(conn, before.id, to))
    out.print(f"renamed {before.name!r} to {record.name!r} (id {record.id})", highlight=False)
    if before.name.casefold() != record.name.casefold():
        out.print(f"note: an inbox directory inbox/{before.name}/ is not read for {record.name} any more: rename it "
                  f"to inbox/{record.name}/", highlight=False, markup=False)


@entity_app.command("archive")
def entity_archive(entity: EntityOpt) -> None:
    """Archive an entity: the daily schedule stops closing it, closes and imports are refused, and everything stored
    stays readable (CLI reports, the read API). `coinfrs entity unarchive` undoes it."""
    from warehouse.entities import archive_entity

    with _cli()._engine().begin() as conn:
        before = _cli()._entity(conn, entity)
        record = archive_entity(conn, before.id)
    if before.archived:
        out.print(f"{record.name} (id {record.id}) was already archived (since {record.archived_at.date()})",
                  highlight=False)
        return
    out.print(f"archived {record.name} (id {record.id}): not closed by the schedule any more, closes and imports are "
              f"refused, its data stays readable", highlight=False)


@entity_app.command("unarchive")
def entity_unarchive(entity: EntityOpt) -> None:
    """Make an archived entity active again: the schedule closes it from its next run (from its earliest stale day)."""
    from warehouse.entities import unarchive_entity

    with _cli()._engine().begin() as conn:
        before = _cli()._entity(conn, entity)
        record = unarchive_entity(conn, before.id)
    out.print(f"{record.name} (id {record.id}) is {'active again' if before.archived else 'already active'}",
              highlight=False)


@entity_app.command("show")
def entity_show(entity: EntityOpt, as_json: JsonOpt = False) -> None:
    """Show the entity's id, timezone, reporting currency, holding-period rule and whether it is archived."""
    with _cli()._engine().connect() as conn:
        record = _cli()._entity(conn, entity)
    if as_json:
        print(json.dumps({"id": record.id, "name": record.name, "timezone": record.timezone,
                          "reporting_currency": record.reporting_currency, "holding_rule": record.holding_rule,
                          "archived": record.archived,
                          "archived_at": record.archived_at.isoformat() if record.archived_at else None}))
        return
    out.print(f"{record.name} (id {record.id}): timezone {record.timezone}, reporting currency "
              f"{record.reporting_currency}, holding rule {record.holding_rule}"
              + (f", archived since {record.archived_at.date()}" if record.archived else ""), highlight=False)


@entity_app.command("set-holding-rule")
def entity_set_holding_rule(
    entity: EntityOpt,
    rule: Annotated[str, typer.Option("--rule", help="us (long-term when disposed after the anniversary of the "
                                                     "acquisition day, the default) or elapsed (more than 365 days).")],
) -> None:
    """Set the holding-period rule of the entity's cost-basis books (docs/cost-basis.md, "Holding period")."""
    from transforms.pnl import write_holding_rule

    with _cli()._engine().begin() as conn:
        record = _cli()._entity(conn, entity)
        span = _refused(lambda: write_holding_rule(conn, record, rule))
    new = rule.strip().lower()
    out.print(f"{record.name}: holding rule {record.holding_rule} -> {new}", highlight=False)
    if span is not None:
        out.print(f"[yellow]note:[/] the stored books of {span[0]} .. {span[1]} follow the old rule until those "
                  f"days are closed again: coinfrs close --entity {record.name} --from {span[0]} --to {span[1]}",
                  highlight=False)


@entity_app.command("set-currency")
def entity_set_currency(
    entity: EntityOpt,
    currency: Annotated[str, typer.Option("--currency", "-c", help="USD, EUR or GBP.")],
) -> None:
    """Set the currency the read API values the entity's positions in (/positions without ?currency=)."""
    from warehouse.catalog import fx_rate_days, write_reporting_currency
    from warehouse.reports import ReportParameterError

    with _cli()._engine().begin() as conn:
        record = _cli()._entity(conn, entity)
        try:
            code = write_reporting_currency(conn, record.id, currency)
        except ReportParameterError as exc:
            raise _cli()._fail(exc.message) from None
        days = fx_rate_days(conn, record.id, code)
    out.print(f"{record.name}: reporting currency {record.reporting_currency} -> {code}", highlight=False)
    if code != "USD" and days == 0:
        out.print(f"[yellow]note:[/] no USD rate of {code} is stored for {record.name} yet: positions show "
                  f"valuation no_fx_rate until `coinfrs prices fetch` (COINFRS_PRICE_CURRENCIES includes {code}) "
                  f"or `coinfrs prices import` stores one", highlight=False)
    elif code != "USD":
        out.print(f"{days} day(s) with a USD rate of {code} stored", highlight=False)
