"""`coinfrs recon ...`: breaks with their causes, the break workflow, localisation, outages, close reports."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

recon_app = typer.Typer(help="Reconciliation: breaks and their causes, acknowledge / adjust, localise, outages.",
                        no_args_is_help=True)

EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")]
DayOpt = Annotated[Optional[str], typer.Option("--date", help="One day, YYYY-MM-DD.")]
FromOpt = Annotated[Optional[str], typer.Option("--from", help="First day of a range.")]
ToOpt = Annotated[Optional[str], typer.Option("--to", help="Last day of a range.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
BreakOpt = Annotated[int, typer.Option("--break", help="The break's id (see `coinfrs recon breaks`).")]
ByOpt = Annotated[str, typer.Option("--by", help="Who takes the action (recorded).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded).")]


def _cli():
    from orchestration import cli

    return cli


def _range(day: str | None, date_from: str | None, date_to: str | None) -> tuple[date, date]:
    cli = _cli()
    if day and (date_from or date_to):
        raise cli._fail("give --date or --from/--to, not both")
    if day:
        start = cli._parse_day(day, "--date")
        return start, start
    if date_from and date_to:
        start, end = cli._parse_day(date_from, "--from"), cli._parse_day(date_to, "--to")
        if end < start:
            raise cli._fail(f"--to {end} is before --from {start}")
        return start, end
    raise cli._fail("give --date YYYY-MM-DD, or --from YYYY-MM-DD --to YYYY-MM-DD")


def _print_json(value: object) -> None:
    print(json.dumps(value))


@recon_app.command("breaks")
def recon_breaks(entity: EntityOpt, day: DayOpt = None, date_from: FromOpt = None, date_to: ToOpt = None,
                 status: Annotated[Optional[str], typer.Option(
                     "--status", help="Only breaks in this status: open, acknowledged, adjusted or resolved.")] = None,
                 as_json: JsonOpt = False) -> None:
    """Breaks of a day or a range: expected vs reported, the difference, the status (a resolved break stays listed,
    with why), ranked candidate causes with evidence. `--json` adds each break's history."""
    from warehouse.reports import ReportParameterError, list_breaks

    cli = _cli()
    start, end = _range(day, date_from, date_to)
    with cli._engine().connect() as conn:
        record = cli._entity(conn, entity)
        try:
            rows = list_breaks(conn, record.id, start, end, status=status, include_resolved=True)
        except ReportParameterError as exc:
            raise cli._fail(f"--{exc.field}: {exc.message}") from None
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{record.name}: breaks {start} .. {end}", show_lines=True)
    for column in ("id", "date", "account", "asset", "expected", "reported", "difference", "status", "likely causes"):
        table.add_column(column)
    for r in rows:
        causes = "\n".join(f"{c['rank']}. {c['code']} ({c['score']}): {c['evidence']}" for c in r["causes"][:3])
        account = r["account"] + (f" ({r['account_type']})" if r["account_type"] != "wallet" else "") + (
            f" / {r['sub_account']}" if r["sub_account"] else "")
        shown_status = r["status"] + (f"\n({r['resolution']})" if r["resolution"] else "")
        table.add_row(str(r["id"]), r["date"], account, r["asset"], r["expected"], r["reported"], r["difference"],
                      shown_status, causes or "no candidate cause found")
    cli.out.print(table)
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    cli.out.print(f"{len(rows)} break(s)" + (f": {', '.join(f'{n} {s}' for s, n in by_status.items())}" if rows else ""))


@recon_app.command("quarantine")
def recon_quarantine(entity: EntityOpt, day: DayOpt = None, date_from: FromOpt = None, date_to: ToOpt = None,
                     as_json: JsonOpt = False) -> None:
    """Staged records a mapper could not read (quarantined: they book no leg, their day closes `partial`): source,
    stream, record id, field and error, by day. Without dates: every quarantined record of the entity."""
    from transforms.quarantine import list_quarantined

    cli = _cli()
    start, end = _range(day, date_from, date_to) if (day or date_from or date_to) else (None, None)
    with cli._engine().connect() as conn:
        record = cli._entity(conn, entity)
        rows = [q.as_dict() for q in list_quarantined(conn, record.id, start, end)]
    if as_json:
        _print_json(rows)
        return
    span = f" {start} .. {end}" if start else ""
    table = Table(title=f"{record.name}: quarantined records{span}")
    for column in ("date", "source", "stream", "account", "record", "field", "error"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["date"], r["source"], r["stream"], r["account"], r["source_raw_id"], r["field"] or "", r["error"])
    cli.out.print(table)
    cli.out.print(f"{len(rows)} quarantined record(s)")


@recon_app.command("ack")
def recon_ack(entity: EntityOpt, break_id: BreakOpt, by: ByOpt, reason: ReasonOpt) -> None:
    """Acknowledge a break with a reason (who, when and why are recorded; it then no longer blocks the lock)."""
    from reconciliation.workflow import BreakActionError, acknowledge_break

    cli = _cli()
    with cli._engine().begin() as conn:
        record = cli._entity(conn, entity)
        try:
            action = acknowledge_break(conn, record, break_id, actor=by, reason=reason)
        except BreakActionError as exc:
            raise cli._fail(str(exc)) from None
    cli.console.print(f"break {break_id} acknowledged by {action.actor} at {action.created_at:%Y-%m-%d %H:%M:%S} UTC: "
                      f"{action.reason}", highlight=False)


@recon_app.command("adjust")
def recon_adjust(
    entity: EntityOpt, break_id: BreakOpt, by: ByOpt, reason: ReasonOpt,
    quantity: Annotated[Optional[str], typer.Option(help="Signed quantity of the adjustment leg (default: the difference).")] = None,
    price: Annotated[Optional[str], typer.Option("--unit-price-usd", help="USD price of the asset, if known.")] = None,
    reclose: Annotated[bool, typer.Option(help="Close the day again (through the latest close) right away.")] = True,
) -> None:
    """Resolve a break with an adjustment leg entered by a person (staged with who, when and why), then re-close."""
    from reconciliation.close import latest_close_date
    from reconciliation.workflow import BreakActionError, adjust_break
    from warehouse.numbers import NotADecimal, D

    cli = _cli()
    try:
        qty = D(quantity) if quantity is not None else None
        unit = D(price) if price is not None else None
    except NotADecimal as exc:
        raise cli._fail(f"--quantity/--unit-price-usd: {exc}") from None
    with cli._engine().begin() as conn:
        record = cli._entity(conn, entity)
        try:
            action = adjust_break(conn, record, break_id, actor=by, reason=reason, quantity=qty, unit_price_usd=unit)
        except BreakActionError as exc:
            raise cli._fail(str(exc)) from None
        day = action.date
        latest = latest_close_date(conn, record.id) or day
    cli.console.print(f"adjustment of {action.quantity} staged (raw record {action.raw_record_id}) for break {break_id} "
                      f"by {action.actor}: {action.reason}", highlight=False)
    if reclose:
        cli.run_close(record.name, day, max(day, latest))
    else:
        cli.console.print(f"run `coinfrs close --entity {record.name} --date {day}` to book it", highlight=False)


@recon_app.command("actions")
def recon_actions(entity: EntityOpt, day: DayOpt = None, date_from: FromOpt = None, date_to: ToOpt = None,
                  as_json: JsonOpt = False) -> None:
    """The history of acknowledgements and adjustments: who, when, why."""
    from reconciliation.workflow import list_break_actions

    cli = _cli()
    start, end = _range(day, date_from, date_to)
    with cli._engine().connect() as conn:
        record = cli._entity(conn, entity)
        rows = list_break_actions(conn, record.id, start, end)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{record.name}: break actions {start} .. {end}")
    for column in ("break", "date", "account", "asset", "action", "quantity", "by", "at", "reason"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["break_id"] or ""), r["date"], r["account"], r["asset"], r["action"], r["quantity"] or "",
                      r["by"], r["at"], r["reason"])
    cli.out.print(table)


@recon_app.command("localise")
def recon_localise(entity: EntityOpt, date_from: Annotated[str, typer.Option("--from")],
                   date_to: Annotated[str, typer.Option("--to")], as_json: JsonOpt = False) -> None:
    """Over a range: the first day each (account, asset) is off, and whether it persists to the end of the range."""
    from reconciliation.workflow import localise_breaks

    cli = _cli()
    start, end = _range(None, date_from, date_to)
    with cli._engine().connect() as conn:
        record = cli._entity(conn, entity)
        rows = localise_breaks(conn, record, start, end)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{record.name}: where the books start to disagree, {start} .. {end}")
    for column in ("account", "asset", "first day off", "difference then", "difference at end", "persists", "break days"):
        table.add_column(column)
    for r in rows:
        first = r["first_day"] + (" (or earlier)" if r["already_off_at_start"] else "")
        table.add_row(r["account"], r["asset"], first, r["difference_first_day"], r["difference_last_day"],
                      "yes" if r["persists"] else f"no (cleared {r['cleared_on']})", ", ".join(r["break_days"]))
    cli.out.print(table)


@recon_app.command("outage")
def recon_outage(entity: EntityOpt, source: Annotated[str, typer.Option(help="The source that was down.")],
                 day: Annotated[str, typer.Option("--date")], reason: ReasonOpt,
                 stream: Annotated[str, typer.Option(help="One stream of the source, or * for all.")] = "*") -> None:
    """Record that a source (or one stream) was down for a day: that day's close becomes partial."""
    from reconciliation.outages import record_source_outage

    cli = _cli()
    target = cli._parse_day(day, "--date")
    with cli._engine().begin() as conn:
        record = cli._entity(conn, entity)
        record_source_outage(conn, record.id, source, target, reason, stream=stream)
    cli.console.print(f"recorded: {source}/{stream} down on {target} for {record.name}; close it again to mark it partial",
                      highlight=False)


@recon_app.command("policy")
def recon_policy(
    entity: EntityOpt,
    block_above_usd: Annotated[Optional[str], typer.Option(
        "--block-above-usd", help="An open break worth more than this many USD is at ERROR severity and blocks PnL "
                                  "and the close from its day on; 'none' to only warn.")] = None,
    transfer_window: Annotated[Optional[int], typer.Option(
        "--transfer-window-seconds", help="Transfer matching without a tx hash: the incoming leg within this many "
                                          "seconds of the outgoing one (default 7200).")] = None,
    fee_tolerance: Annotated[Optional[str], typer.Option(
        "--transfer-fee-tolerance", help="Transfer matching without a tx hash: incoming >= outgoing x (1 - this) "
                                         "(default 0.01).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or set the entity's reconciliation policy (applies from the next close)."""
    from dataclasses import replace
    from decimal import InvalidOperation

    from reconciliation.blocking import load_policy, write_policy
    from warehouse.numbers import D, to_text

    cli = _cli()

    def decimal_of(text: str, option: str):
        try:
            return D(text)
        except (InvalidOperation, ValueError):
            raise cli._fail(f"{option}: {text!r} is not a decimal number") from None

    with cli._engine().begin() as conn:
        record = cli._entity(conn, entity)
        policy = load_policy(conn, record.id)
        if block_above_usd is not None or transfer_window is not None or fee_tolerance is not None:
            changes: dict = {}
            if block_above_usd is not None:
                changes["block_above_usd"] = (None if block_above_usd.strip().lower() == "none"
                                              else decimal_of(block_above_usd, "--block-above-usd"))
            if transfer_window is not None:
                changes["transfer_window_seconds"] = transfer_window
            if fee_tolerance is not None:
                changes["transfer_fee_tolerance"] = decimal_of(fee_tolerance, "--transfer-fee-tolerance")
            try:
                policy = write_policy(conn, record.id, replace(policy, **changes))
            except ValueError as exc:
                raise cli._fail(str(exc)) from None
    shown = {"entity": record.name, "block_above_usd": to_text(policy.block_above_usd),
             "transfer_window_seconds": policy.transfer_window_seconds,
             "transfer_fee_tolerance": to_text(policy.transfer_fee_tolerance)}
    if as_json:
        _print_json(shown)
        return
    for key, value in shown.items():
        cli.console.print(f"{key}: {value if value is not None else 'none (breaks only warn)'}", highlight=False)


@recon_app.command("report")
def recon_report(entity: EntityOpt, day: Annotated[str, typer.Option("--date")],
                 output: Annotated[Optional[Path], typer.Option("--out", help="Write the HTML here (else stdout).")] = None) -> None:
    """The close report of a day (HTML): as closed, and what is known now if it changed since."""
    from reconciliation.report import close_report_html

    cli = _cli()
    target = cli._parse_day(day, "--date")
    with cli._engine().connect() as conn:
        record = cli._entity(conn, entity)
        html = close_report_html(conn, record, target)
    if html is None:
        raise cli._fail(f"{record.name} has no close for {target}")
    if output:
        output.write_text(html, encoding="utf-8")
        cli.console.print(f"wrote {output}", highlight=False)
    else:
        print(html)

