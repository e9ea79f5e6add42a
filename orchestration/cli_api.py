"""``coinfrs journal``: the general-ledger accounts the read API's journal entries post to, per entity (the
``coinfrs entity`` commands are in ``cli_entities.py``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from orchestration.cli_output import fail, say_error
from rich.table import Table

app = typer.Typer(help="The general ledger: journal entries, trial balance, tie-out, ERP files and the GL account of each "
                       "role, per entity.", no_args_is_help=True)
console = Console()
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")]


def _entity(conn, ref: str):
    from warehouse.entities import EntityNotFound, resolve_entity

    try:
        return resolve_entity(conn, ref)
    except EntityNotFound as exc:
        say_error(f"{exc}")
        raise typer.Exit(1) from None


@app.command("accounts")
def journal_accounts(entity: EntityOpt, as_json: JsonOpt = False) -> None:
    """Show the general-ledger account of each role, and the entity's per-asset / per-account-type mappings."""
    from warehouse.db import get_engine
    from warehouse.journal import load_account_map

    with get_engine().connect() as conn:
        mapping = load_account_map(conn, _entity(conn, entity).id)
    rows = [(role, "", "", account.code, account.name) for role, account in mapping.roles().items()]
    rows += [(role, asset, account_type, account.code, account.name)
             for (role, asset, account_type), account in sorted(mapping.rows.items()) if asset or account_type]
    if as_json:
        print(json.dumps([dict(zip(("role", "asset", "account_type", "code", "name"), r)) for r in rows]))
        return
    table = Table("role", "asset", "account type", "code", "name")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@app.command("set-account")
def journal_set_account(
    entity: EntityOpt,
    role: Annotated[str, typer.Option(help="A journal role: inventory, cash, clearing, external_transfers, suspense, "
                                           "loan_liability, opening_equity, income, staking_income, airdrop_income, "
                                           "interest_income, realized_gain, derivatives_pnl, fee_expense, rounding, "
                                           "interest_expense.")],
    code: Annotated[str, typer.Option(help="General-ledger account number, e.g. 1400.")],
    name: Annotated[str, typer.Option(help="General-ledger account name.")],
    asset: Annotated[str | None, typer.Option(help="Only for this asset (symbol), e.g. BTC.")] = None,
    account_type: Annotated[str | None, typer.Option("--account-type", help="Only for ledger accounts of this "
                                                                             "type, e.g. spot or wallet.")] = None,
) -> None:
    """Map a journal role (for every asset and account type, or only one) to one of the entity's GL accounts."""
    from warehouse.db import get_engine
    from warehouse.journal import write_account_mapping

    with get_engine().begin() as conn:
        record = _entity(conn, entity)
        try:
            account = write_account_mapping(conn, record.id, role, code, name, asset=asset, account_type=account_type)
        except ValueError as exc:
            say_error(f"{exc}")
            raise typer.Exit(1) from None
    scope = " ".join(x for x in (account.asset, account.account_type) if x)
    console.print(f"{record.name}: {account.role}{f' ({scope})' if scope else ''} -> {account.code} {account.name}",
                  highlight=False)


@app.command("set-policy")
def journal_set_policy(
    entity: EntityOpt,
    fair_value: Annotated[str, typer.Option("--fair-value", help="none, asu_2023_08 (remeasure to fair value, US GAAP) "
                                                                   "or ifrs_cost_impairment (cost less impairment).")],
) -> None:
    """Choose how the journal books fair value at each month end."""
    from warehouse.db import get_engine
    from warehouse.journal import write_fair_value_policy

    with get_engine().begin() as conn:
        record = _entity(conn, entity)
        try:
            policy = write_fair_value_policy(conn, record.id, fair_value)
        except ValueError as exc:
            _fail(exc)
    console.print(f"{record.name}: fair-value policy {policy}", highlight=False)


FromOpt = Annotated[str, typer.Option("--from", help="First close day, YYYY-MM-DD.")]
ToOpt = Annotated[str, typer.Option("--to", help="Last close day, YYYY-MM-DD.")]
MethodOpt = Annotated[str, typer.Option(help="Book: configured (the entity's, default) or fifo.")]
PoolOpt = Annotated[str | None, typer.Option(help="Pool of the fifo book: universal or account.")]


def _day(text: str, option: str):
    from datetime import date

    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        say_error(f"{option}: not a date (YYYY-MM-DD): {text!r}")
        raise typer.Exit(2) from None


def _fail(exc: Exception) -> None:
    raise fail(getattr(exc, "message", None) or str(exc)) from None


def _amount(text: str) -> str:
    from decimal import Decimal

    return f"{Decimal(text):,.2f}"


@app.command("entries")
def journal_entries_cmd(
    entity: EntityOpt, date_from: FromOpt, date_to: ToOpt, as_json: JsonOpt = False,
    fmt: Annotated[str | None, typer.Option("--format", help="Write an ERP import file: quickbooks, xero or netsuite "
                                                             "(with --out).")] = None,
    out: Annotated[str | None, typer.Option("--out", help="File to write the ERP import file to.")] = None,
    tax_rate: Annotated[str, typer.Option(help="Xero: the TaxRate of every line.")] = "Tax Exempt",
    subsidiary: Annotated[str, typer.Option(help="NetSuite OneWorld: the Subsidiary of every entry.")] = "",
    method: MethodOpt = "configured", pool: PoolOpt = None,
) -> None:
    """Journal entries per close day and event, balanced in cents, from the entity's cost-basis book."""
    import json
    from pathlib import Path

    from transforms.journal_book import JournalError
    from warehouse.db import get_engine
    from warehouse.journal import journal_entries
    from warehouse.journal_erp import ERP_FORMATS, erp_csv
    from warehouse.reports import ReportParameterError

    start, end = _day(date_from, "--from"), _day(date_to, "--to")
    if fmt is not None and (fmt not in ERP_FORMATS or not out):
        _fail(ValueError(f"--format takes {', '.join(ERP_FORMATS)} and needs --out FILE"))
    with get_engine().connect() as conn:
        record = _entity(conn, entity)
        try:
            entries = journal_entries(conn, record, start, end, method=method, pool=pool)
        except (ReportParameterError, JournalError) as exc:
            _fail(exc)
    if fmt is not None:
        Path(out).write_text(erp_csv(fmt, entries, entity=record.name, tax_rate=tax_rate, subsidiary=subsidiary),
                             encoding="utf-8", newline="")
        console.print(f"{len(entries)} entr(ies), {sum(len(e['lines']) for e in entries)} line(s) -> {out} ({fmt})",
                      highlight=False)
        return
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table("date", "event", "account", "name", "asset", "ledger account", "debit", "credit")
    for e in entries:
        for line in e["lines"]:
            table.add_row(e["date"], e["event"], line["account"], line["account_name"], line["asset"] or "",
                          line["ledger_account"] or "", _amount(line["debit"]), _amount(line["credit"]))
    console.print(table)


@app.command("trial-balance")
def journal_trial_balance(entity: EntityOpt, date_from: FromOpt, date_to: ToOpt, as_json: JsonOpt = False,
                          method: MethodOpt = "configured", pool: PoolOpt = None) -> None:
    """Trial balance per GL account over the period: opening, debits, credits, closing (debit positive)."""
    import json

    from transforms.journal_book import JournalError
    from warehouse.db import get_engine
    from warehouse.journal import trial_balance
    from warehouse.reports import ReportParameterError

    start, end = _day(date_from, "--from"), _day(date_to, "--to")
    with get_engine().connect() as conn:
        record = _entity(conn, entity)
        try:
            rows = trial_balance(conn, record, start, end, method=method, pool=pool)
        except (ReportParameterError, JournalError) as exc:
            _fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("account", "name", "opening", "debits", "credits", "closing")
    for r in rows:
        table.add_row(r["account"], r["account_name"], *(_amount(r[k]) for k in ("opening", "debits", "credits", "closing")))
    console.print(table)


@app.command("rollforward")
def journal_rollforward(entity: EntityOpt, date_from: FromOpt, date_to: ToOpt, as_json: JsonOpt = False,
                        method: MethodOpt = "configured", pool: PoolOpt = None) -> None:
    """Asset roll-forward per asset (and account): opening + in - out - fees = closing, in quantity, cost and fair value."""
    import json

    from transforms.journal_book import JournalError
    from warehouse.db import get_engine
    from warehouse.journal import asset_rollforward_rows
    from warehouse.reports import ReportParameterError

    start, end = _day(date_from, "--from"), _day(date_to, "--to")
    with get_engine().connect() as conn:
        record = _entity(conn, entity)
        try:
            rows = asset_rollforward_rows(conn, record, start, end, method=method, pool=pool)
        except (ReportParameterError, JournalError) as exc:
            _fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("asset", "account", "open qty", "open cost", "in cost", "out cost", "fees cost", "close qty",
                  "close cost", "close fair value")
    for r in rows:
        table.add_row(r["asset"] or "", r["account"] or "", r["opening_quantity"],
                      *(_amount(r[k]) for k in ("opening_cost", "in_cost", "out_cost", "fees_cost")),
                      r["closing_quantity"], _amount(r["closing_cost"]),
                      _amount(r["closing_fair_value"]) if r["closing_fair_value"] is not None else "unpriced")
    console.print(table)


@app.command("tieout")
def journal_tieout(entity: EntityOpt, day: Annotated[str, typer.Option("--date", help="Close day, YYYY-MM-DD.")],
                   as_json: JsonOpt = False, method: MethodOpt = "configured", pool: PoolOpt = None) -> None:
    """GL digital assets against the subledger's open lots at a close, per asset (and account); exit 1 on a difference."""
    import json

    from transforms.journal_book import JournalError
    from warehouse.db import get_engine
    from warehouse.journal import tieout_rows
    from warehouse.reports import ReportParameterError

    when = _day(day, "--date")
    with get_engine().connect() as conn:
        record = _entity(conn, entity)
        try:
            rows = tieout_rows(conn, record, when, method=method, pool=pool)
        except (ReportParameterError, JournalError) as exc:
            _fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        table = Table("asset", "account", "GL", "subledger", "difference")
        for r in rows:
            table.add_row(r["asset"] or "", r["account"] or "", _amount(r["gl"]), _amount(r["subledger"]),
                          _amount(r["difference"]))
        console.print(table)
    if any(not r["ties"] for r in rows):
        raise typer.Exit(1)
