"""`coinfrs close lock|unlock|signoff|periods|audit`: the period close (``reconciliation/periods.py``). Thin."""

from __future__ import annotations

import getpass
import json
from datetime import timezone
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")]
MonthOpt = Annotated[Optional[str], typer.Option("--month", help="A calendar month, YYYY-MM.")]
ThroughOpt = Annotated[Optional[str], typer.Option("--through", help="Every day up to this one, YYYY-MM-DD.")]
DayOpt = Annotated[Optional[str], typer.Option("--date", help="One day, YYYY-MM-DD.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _cli():
    from orchestration import cli

    return cli


def _period(month: str | None, through: str | None, day: str | None):
    from reconciliation.periods import PeriodError, period_of

    cli = _cli()
    try:
        return period_of(month=month, through=cli._parse_day(through, "--through") if through else None,
                         day=cli._parse_day(day, "--date") if day else None)
    except PeriodError as exc:
        raise cli._fail(str(exc)) from None


def _bounds(date_from: str | None, date_to: str | None):
    cli = _cli()
    return (cli._parse_day(date_from, "--from") if date_from else None,
            cli._parse_day(date_to, "--to") if date_to else None)


def _write(entity: str, action) -> Any:
    """Run ``action(conn, entity)`` in one transaction; a refused action is a clear error, nothing written."""
    from reconciliation.periods import PeriodError

    cli = _cli()
    with cli._engine().begin() as conn:
        record = cli._entity(conn, entity)
        try:
            return action(conn, record)
        except PeriodError as exc:
            raise cli._fail(str(exc)) from None


def _show(lock, verb: str, as_json: bool) -> None:
    from reconciliation.periods import jsonable

    if as_json:
        print(json.dumps(jsonable(lock.as_dict())))
        return
    signed = ", ".join(f"{s.role} {s.signed_by}" for s in lock.signoffs if s.voided_at is None) or "no sign-off"
    who = (f"by {lock.unlocked_by}: {lock.unlock_reason}" if verb == "unlocked" else f"by {lock.locked_by}: {lock.lock_reason}")
    days = (lock.last_day - lock.first_day).days + 1
    _cli().console.print(f"{verb} {lock.entity} {lock.period} ({lock.first_day}..{lock.last_day}, "
                         f"{days} day{'s' if days > 1 else ''}) {who} [{lock.state}; {signed}]",
                         highlight=False, markup=False)


def close_lock(
    entity: EntityOpt,
    month: MonthOpt = None,
    through: ThroughOpt = None,
    day: DayOpt = None,
    by: Annotated[Optional[str], typer.Option("--by", help="Who locks (recorded). Required with --month/--through; "
                                                           "with --date it defaults to the login name.")] = None,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why (recorded). Required with --month/--through.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Lock a period: every day of it must have a close without open breaks (not failed, blocked, partial, unpriced
    or stale). A locked day never changes; `coinfrs close unlock` releases a period, with who and why."""
    from reconciliation.periods import lock_period

    period = _period(month, through, day)
    if period.kind != "day" and (not (by or "").strip() or not (reason or "").strip()):
        raise _cli()._fail("--by and --reason are required to lock a period: who locks it and why")
    if period.kind == "day":
        by = by or getpass.getuser()
        reason = reason or "single-day lock (no reason given)"
    lock = _write(entity, lambda conn, record: lock_period(conn, record, period, by=by or "", reason=reason or ""))
    _show(lock, "locked", as_json)


def close_unlock(
    entity: EntityOpt,
    by: Annotated[str, typer.Option("--by", help="Who unlocks (recorded).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
    month: MonthOpt = None,
    through: ThroughOpt = None,
    day: DayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Unlock a locked period (all its days: --date names the period holding that day). Its sign-offs become void;
    the days can be closed again, then locked and signed off anew."""
    from reconciliation.periods import unlock_period

    period = _period(month, through, day)
    lock = _write(entity, lambda conn, record: unlock_period(conn, record, period, by=by, reason=reason))
    _show(lock, "unlocked", as_json)


def close_signoff(
    entity: EntityOpt,
    role: Annotated[str, typer.Option("--role", help="preparer or reviewer (the preparer signs first).")],
    by: Annotated[str, typer.Option("--by", help="Who signs (recorded); the reviewer must differ from the preparer.")],
    note: Annotated[Optional[str], typer.Option("--note", help="A note kept with the sign-off.")] = None,
    month: MonthOpt = None,
    through: ThroughOpt = None,
    day: DayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign off a locked period as its preparer or its reviewer."""
    from reconciliation.periods import sign_off

    period = _period(month, through, day)
    lock = _write(entity, lambda conn, record: sign_off(conn, record, period, role=role.strip().lower(), by=by,
                                                        note=note))
    _show(lock, "signed off", as_json)


def close_periods(
    entity: EntityOpt,
    date_from: Annotated[Optional[str], typer.Option("--from", help="Periods ending on or after this day.")] = None,
    date_to: Annotated[Optional[str], typer.Option("--to", help="Periods starting on or before this day.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Locked periods (and unlocked ones) with who locked them, why, and their sign-offs."""
    from reconciliation.periods import jsonable, list_periods

    cli = _cli()
    start, end = _bounds(date_from, date_to)
    with cli._engine().connect() as conn:
        record = cli._entity(conn, entity)
        locks = list_periods(conn, record, start, end)
    if as_json:
        print(json.dumps([jsonable(lock.as_dict()) for lock in locks]))
        return
    table = Table(title=f"{record.name}: period locks")
    for column in ("id", "period", "days", "state", "locked by", "reason", "locked at", "unlocked", "preparer", "reviewer"):
        table.add_column(column)
    for lock in locks:
        prep, rev = lock.signoff("preparer"), lock.signoff("reviewer")
        table.add_row(str(lock.id), lock.period, f"{lock.first_day}..{lock.last_day}", lock.state, lock.locked_by,
                      lock.lock_reason, f"{lock.locked_at.astimezone(timezone.utc):%Y-%m-%d %H:%M}",
                      f"{lock.unlocked_by}: {lock.unlock_reason}" if lock.unlocked_at else "",
                      prep.signed_by if prep else "", rev.signed_by if rev else "")
    cli.out.print(table)


def close_audit(
    entity: EntityOpt,
    date_from: Annotated[Optional[str], typer.Option("--from", help="Entries whose period ends on or after this day.")] = None,
    date_to: Annotated[Optional[str], typer.Option("--to", help="Entries whose period starts on or before this day.")] = None,
    action: Annotated[Optional[str], typer.Option("--action", help="lock, unlock, signoff or void.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log of the period close: every lock, unlock, sign-off and void, oldest first."""
    from reconciliation.periods import PeriodError, audit_log, jsonable

    cli = _cli()
    start, end = _bounds(date_from, date_to)
    items: list[dict] = []
    with cli._engine().connect() as conn:
        record = cli._entity(conn, entity)
        cursor = None
        try:
            while True:
                page = audit_log(conn, record, date_from=start, date_to=end, action=action, cursor=cursor, limit=1000)
                items.extend(page.items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        except PeriodError as exc:
            raise cli._fail(str(exc)) from None
    if as_json:
        print(json.dumps(jsonable(items)))
        return
    table = Table(title=f"{record.name}: close audit log")
    for column in ("id", "at (UTC)", "action", "actor", "period", "days", "reason", "details"):
        table.add_column(column)
    for e in items:
        details = ", ".join(f"{k}: {v}" for k, v in sorted(e["details"].items()))
        table.add_row(str(e["id"]), f"{e['at'].astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}", e["action"], e["actor"], e["period"],
                      f"{e['first_day']}..{e['last_day']}", e["reason"] or "", details)
    cli.out.print(table)
