"""`coinfrs`: the command line. Thin: every command calls the packages and prints."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console

from orchestration.cli_output import fail, file_progress, say_error
from rich.table import Table

from orchestration import cli_api, cli_periods, cli_prices
from orchestration.cli_assets import asset_app, classify_app
from orchestration.cli_chains import wallet_app
from orchestration.cli_costbasis import pnl_commands
from orchestration.cli_entities import entity_app
from orchestration.cli_sources import source_app
from orchestration.cli_workers import worker_app
from orchestration.cli_backup import backup_app
from orchestration.cli_recon import recon_app
from orchestration.cli_dbroles import set_role_password_command
from orchestration.cli_resident import resident_app

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# platformdirs (used by Dagster and Great Expectations) warns on every run where XDG_RUNTIME_DIR is unset
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

app = typer.Typer(help="Coinfrs: close the books on crypto, every day.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The warehouse database.", no_args_is_help=True)
close_app = typer.Typer(help="Run, inspect and lock daily closes; lock, unlock and sign off periods.")
pnl_app = typer.Typer(help="Cost basis and PnL reports.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for the read API.", no_args_is_help=True)
app.add_typer(db_app, name="db")
db_app.command("set-role-password")(set_role_password_command)
app.add_typer(close_app, name="close")
app.add_typer(pnl_app, name="pnl")
app.add_typer(apikey_app, name="apikey")
app.add_typer(recon_app, name="recon")
app.add_typer(cli_api.app, name="journal")
app.add_typer(entity_app, name="entity")
app.add_typer(cli_prices.prices_app, name="prices")
app.add_typer(wallet_app, name="wallet")
app.add_typer(source_app, name="source")
app.add_typer(asset_app, name="asset")
app.add_typer(classify_app, name="classify")
app.add_typer(worker_app, name="worker")
app.add_typer(backup_app, name="backup")
app.add_typer(resident_app, name="resident")
pnl_app.add_typer(pnl_commands)  # cost basis: book, compare, compute, lots, rollforward, breakdown

console = Console(stderr=True)
out = Console()
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "fund"

EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")]


_fail = fail  # orchestration/cli_output.py: one error line on stderr, never wrapped


def _parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


def _engine():
    from warehouse.db import get_engine

    return get_engine()


def _entity(conn, ref: str):
    from warehouse.entities import EntityNotFound, resolve_entity

    try:
        return resolve_entity(conn, ref)
    except EntityNotFound as exc:
        raise _fail(str(exc)) from None


def _entity_to_write(conn, ref: str, *, create: bool, timezone: str = "UTC"):
    """The entity an import, a source or a wallet writes to (``warehouse.entities.entity_to_write``); an unknown,
    archived or invalid name ends the command in one line (exit code 1), naming --create for an unknown one."""
    from warehouse.entities import EntityArchived, EntityNameError, EntityNotFound, entity_to_write

    try:
        return entity_to_write(conn, ref, create=create, timezone=timezone)
    except EntityNotFound as exc:
        raise _fail(f"{exc}; nothing was written (add --create to create an entity {ref.strip()!r})") from None
    except (EntityArchived, EntityNameError) as exc:
        raise _fail(str(exc)) from None


# ----------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (Alembic) up to the newest."""
    from warehouse.db import database_url, redact
    from warehouse.migrate import MigrationRefused, current_revision, upgrade

    try:
        upgrade()
    except MigrationRefused as exc:
        raise _fail(str(exc)) from None
    console.print(f"database {redact(database_url())} is at revision {current_revision()}", highlight=False)


# ----------------------------------------------------------------------------- import


@app.command("import-csv")
def import_csv_command(
    files: Annotated[list[Path], typer.Argument(help="CSV files.", exists=True, dir_okay=False, readable=True)],
    entity: EntityOpt,
    kind: Annotated[str, typer.Option(help="ledger, balances, binance-export (Binance Transaction History), kraken-ledgers, "
                                           "coinbase-exchange (Coinbase Exchange/Pro account statement), coinbase "
                                           "(Coinbase transaction history) or nexo.")] = "ledger",
    timezone: Annotated[Optional[str], typer.Option("--timezone", help="Timezone of naive timestamps (IANA name).")] = None,
    entity_timezone: Annotated[str, typer.Option(help="Timezone of a new entity's close days (with --create).")] = "UTC",
    create: Annotated[bool, typer.Option("--create", help="Create the entity if no entity has this name (without it, "
                                                          "an unknown name is refused: a typo never makes an entity).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what each file staged as JSON.")] = False,
) -> None:
    """Stage CSV files in one transaction, each read once as it streams in: one bad row in any file rejects the
    whole import (every file is still checked, and every error named). The entity must exist and be active
    (`coinfrs entity create`, or --create here); exit code 1 when anything is refused, nothing imported."""
    from ingestion.csv_files import CSV_KINDS, CsvFile, CsvImportError, import_csv
    from warehouse.entities import validate_timezone

    if kind not in CSV_KINDS:
        raise _fail(f"--kind must be one of {', '.join(CSV_KINDS)}, not {kind!r}")
    try:
        if timezone:
            validate_timezone(timezone)
        validate_timezone(entity_timezone)
    except ValueError as exc:
        raise _fail(str(exc)) from None

    class _Refused(Exception):
        pass

    results, problems = [], []
    try:
        with _engine().begin() as conn, file_progress(files) as progress_for:
            target = _entity_to_write(conn, entity, create=create, timezone=entity_timezone)
            for path in files:
                try:
                    file = CsvFile.from_path(path, on_progress=progress_for(path))  # a bar on a terminal
                    results.append(import_csv(conn, target.id, kind, file, naive_timezone=timezone))
                except CsvImportError as exc:
                    problems.append(str(exc))
                except OSError as exc:
                    problems.append(f"{path.name}: cannot be read ({exc.strerror or type(exc).__name__})")
            if problems:
                raise _Refused  # roll back what the other files staged: all or nothing
    except _Refused:
        for problem in problems:  # each error on one line, never wrapped (a script or grep reads them)
            console.print(problem, highlight=False, markup=False, soft_wrap=True)
        raise _fail("nothing was imported") from None
    if as_json:
        print(json.dumps([{"file": r.file_name, "kind": kind, "entity": target.name, "rows": r.rows,
                           "inserted": r.inserted, "skipped": r.skipped, "ingestion_run_id": str(r.run_id)}
                          for r in results]))
        return
    for result in results:
        console.print(f"{result.file_name}: {result.rows} rows, {result.inserted} new, {result.skipped} already staged "
                      f"({kind}, entity {target.name})", highlight=False)


# ----------------------------------------------------------------------------- close


class _ProgressHandler(logging.Handler):
    def __init__(self, started: float) -> None:
        super().__init__(logging.INFO)
        self.started = started

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[dim]{time.monotonic() - self.started:7.1f}s[/] {record.getMessage()}", highlight=False)


def run_close(entity: str, start: date, end: date, *, wait: bool = False, as_json: bool = False) -> None:
    """Close [start, end] with progress on stderr; then the closes as a table, or (``as_json``) as JSON on stdout."""
    from orchestration.close_runner import CloseRunError, close_days
    from warehouse.entities import EntityArchived, EntityNotFound
    from warehouse.locks import EntityBusyError

    started = time.monotonic()
    handler = _ProgressHandler(started)
    progress_logger = logging.getLogger("coinfrs.close")
    progress_logger.addHandler(handler)
    progress_logger.setLevel(logging.INFO)
    days = (end - start).days + 1
    console.print(f"closing {entity}: {start} .. {end} ({days} day{'s' if days > 1 else ''}) in one run", highlight=False)
    try:
        with console.status("running the close (canonical → reconciliation → cost basis → close)"):
            run = close_days([entity], start, end, wait=wait)
    except (CloseRunError, EntityBusyError, EntityNotFound, EntityArchived) as exc:
        raise _fail(str(exc)) from None
    finally:
        progress_logger.removeHandler(handler)
    elapsed = time.monotonic() - started
    if not run.success:
        raise _fail(f"the close failed after {elapsed:.1f}s (run {run.run_id}): {run.error}")
    if run.start < start:
        console.print(f"recomputed from {run.start}: the days from there were stale (their inputs changed after "
                      "they were closed)", highlight=False)
        start = run.start
    console.print(f"closed {(end - start).days + 1} day(s) in {elapsed:.1f}s (Dagster run {run.run_id})", highlight=False)
    if as_json:
        from reconciliation.close import close_summaries

        with _engine().connect() as conn:
            rows = close_summaries(conn, _entity(conn, entity), start, end)
        print(json.dumps({"entity": entity, "from": start.isoformat(), "to": end.isoformat(), "run_id": run.run_id,
                          "seconds": round(elapsed, 1), "key_problems": list(run.key_problems), "closes": rows}))
        return
    _print_closes(entity, start, end)


def _shown(text: str | None, places: int = 2) -> str:
    """An exact decimal string rounded for display in a table (JSON output keeps every digit)."""
    if text in (None, ""):
        return ""
    from decimal import ROUND_HALF_EVEN, Decimal

    value = Decimal(text).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    return f"{value:,}"


def _print_closes(entity_ref: str, start: date, end: date, limit: int = 60) -> None:
    from reconciliation.close import close_summaries

    with _engine().connect() as conn:
        entity = _entity(conn, entity_ref)
        rows = close_summaries(conn, entity, start, end)
    table = Table(title=f"{entity.name}: daily closes {start} .. {end}")
    for column in ("date", "status", "legs", "positions", "breaks", "realized PnL (USD, FIFO)", "locked"):
        table.add_column(column, justify="right" if column not in ("date", "status") else "left")
    shown = rows if len(rows) <= limit else rows[-limit:]
    for r in shown:
        style = "red" if r["status"] != "closed" else None
        table.add_row(r["date"], r["status"], r["legs"], r["positions"], r["breaks"], _shown(r["realized_gain"]), r["locked"],
                      style=style)
    if len(rows) > limit:
        table.caption = f"last {limit} of {len(rows)} days"
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["status"]] = totals.get(r["status"], 0) + 1
    out.print(table)
    named = {"closed": "closed", "breaks": "with breaks", "failed": "failed", "stale": "stale (close again)"}
    out.print(", ".join(f"{n} {named.get(status, status)}" for status, n in sorted(totals.items())) or "no closes",
              highlight=False)
    if totals.get("unpriced"):
        out.print(f"unpriced: a figure needs a price that is missing; see `coinfrs prices missing --entity {entity.name} "
                  f"--from {start} --to {end}`", highlight=False)


@close_app.callback(invoke_without_command=True)
def close(
    ctx: typer.Context,
    entity: Annotated[Optional[str], typer.Option("--entity", "-e", help="Entity name or id.")] = None,
    day: Annotated[Optional[str], typer.Option("--date", help="One day, YYYY-MM-DD.")] = None,
    date_from: Annotated[Optional[str], typer.Option("--from", help="First day of a range.")] = None,
    date_to: Annotated[Optional[str], typer.Option("--to", help="Last day of a range.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="If another close of the entity is running, queue behind it "
                                                      "instead of refusing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the closes of the range as JSON (progress stays on "
                                                         "stderr).")] = False,
) -> None:
    """Close one day (--date) or a range (--from/--to) in one in-process Dagster run (one close per entity at a time)."""
    if ctx.invoked_subcommand is not None:
        return
    if not entity:
        raise _fail("--entity is required")
    if day and (date_from or date_to):
        raise _fail("give --date or --from/--to, not both")
    if day:
        start = end = _parse_day(day, "--date")
    elif date_from and date_to:
        start, end = _parse_day(date_from, "--from"), _parse_day(date_to, "--to")
    else:
        raise _fail("give --date YYYY-MM-DD, or --from YYYY-MM-DD --to YYYY-MM-DD")
    from warehouse.entities import EntityArchived, require_active

    with _engine().connect() as conn:
        record = _entity(conn, entity)
    try:
        require_active(record)
    except EntityArchived as exc:
        raise _fail(str(exc)) from None
    run_close(record.name, start, end, wait=wait, as_json=as_json)


close_app.command("lock")(cli_periods.close_lock)
close_app.command("unlock")(cli_periods.close_unlock)
close_app.command("signoff")(cli_periods.close_signoff)
close_app.command("periods")(cli_periods.close_periods)
close_app.command("audit")(cli_periods.close_audit)


@close_app.command("list")
def close_list(entity: EntityOpt, date_from: Annotated[str, typer.Option("--from")],
               date_to: Annotated[str, typer.Option("--to")],
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON: one object per day.")] = False) -> None:
    """Show the closes of a range: status (closed, breaks, stale, partial, blocked, failed), counts, realized PnL."""
    start, end = _parse_day(date_from, "--from"), _parse_day(date_to, "--to")
    if not as_json:
        _print_closes(entity, start, end, limit=10_000)
        return
    from reconciliation.close import close_summaries

    with _engine().connect() as conn:
        rows = close_summaries(conn, _entity(conn, entity), start, end)
    print(json.dumps(rows))


# ----------------------------------------------------------------------------- reports


@pnl_app.command("realized")
def pnl_realized(
    entity: EntityOpt,
    date_from: Annotated[str, typer.Option("--from")],
    date_to: Annotated[str, typer.Option("--to")],
    method: Annotated[str, typer.Option(help="fifo, lifo, hifo, lofo, average, or configured (the entity's book).")] = "fifo",
    pool: Annotated[str, typer.Option(help="universal or account.")] = "universal",
    currency: Annotated[Optional[str], typer.Option(help="USD, EUR or GBP (default: the entity's reporting "
                                                         "currency).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Realized PnL over a period in the reporting currency: proceeds, cost basis, gain, disposals (fee disposals
    included). Stored USD books are read from what the close stored; anything else is computed on demand."""
    from orchestration.cli_costbasis import print_fx
    from transforms.pnl_reports import realized_summary

    start, end = _parse_day(date_from, "--from"), _parse_day(date_to, "--to")
    with _engine().connect() as conn:
        record = _entity(conn, entity)
        try:
            summary = realized_summary(conn, record, start, end, method=method, pool=pool, currency=currency)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(summary)) if sys.stdout.isatty() else print(json.dumps(summary))
        return
    print_fx(summary)
    table = Table(title=f"{record.name}: realized PnL {start} .. {end} ({method}, {pool} pool), {summary['currency']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key != "fx":
            table.add_row(key, str(value))
    out.print(table)


# ----------------------------------------------------------------------------- API


@apikey_app.command("create")
def apikey_create(
    entity: Annotated[list[str], typer.Option("--entity", "-e", help="Entity name or id; repeat for several.")],
    scope: Annotated[str, typer.Option(help="read (data routes) or admin (also the operator routes).")] = "read",
    label: Annotated[Optional[str], typer.Option(help="What the key is for.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts (the key, its prefix, scope, "
                                                         "entities and label).")] = False,
) -> None:
    """Create a read API key for one or more entities. The key is printed once; only its hash is stored."""
    from api.security import SCOPES, create_api_key, parse_key

    if scope not in SCOPES:
        raise _fail(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")
    with _engine().begin() as conn:
        records = [_entity(conn, ref) for ref in entity]
        key = create_api_key(conn, [r.id for r in records], label=label, scope=scope)
    if as_json:
        print(json.dumps({"key": key, "prefix": f"cf_{parse_key(key)}", "scope": scope,
                          "entities": [r.name for r in records], "label": label}))
        return
    names = ", ".join(r.name for r in records)
    console.print(f"{scope} API key for {names} (shown once, store it now; send it as the X-API-Key header):",
                  highlight=False)
    print(key)


@apikey_app.command("revoke")
def apikey_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix (cf_XXXXXXXX).")]) -> None:
    """Revoke an API key by its prefix."""
    from api.security import revoke_api_key

    with _engine().begin() as conn:
        if not revoke_api_key(conn, prefix):
            raise _fail(f"no active key with prefix {prefix!r}")
    console.print(f"revoked {prefix}")


@apikey_app.command("list")
def apikey_list(entity: Annotated[Optional[str], typer.Option("--entity", "-e", help="Only keys of this entity.")] = None,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """API keys: prefix, scope, entities, label, created, revoked (never a secret)."""
    from api.security import list_api_keys

    with _engine().connect() as conn:
        ids = [_entity(conn, entity).id] if entity else None
        records = list_api_keys(conn, ids)
    if as_json:
        print(json.dumps([{"prefix": f"cf_{r.prefix}", "scope": r.scope, "entities": list(r.entities), "label": r.label,
                           "created_at": r.created_at.isoformat(),
                           "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None} for r in records]))
        return
    table = Table("prefix", "scope", "entities", "label", "created", "revoked")
    for r in records:
        table.add_row(f"cf_{r.prefix}", r.scope, ", ".join(r.entities), r.label or "",
                      r.created_at.isoformat(timespec="seconds"),
                      r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "")
    console.print(table)
    console.print(f"{len(records)} key(s)")


@app.command("serve")
def serve(host: str = "127.0.0.1", port: int = 8000,
          workers: Annotated[int, typer.Option(help="API worker processes, each with its own socket on the port "
                                                     "(one per core in production).")] = 1,
          ) -> None:
    """Run the read API (uvicorn; several workers share the port with SO_REUSEPORT)."""
    from api.logs import UVICORN_LOG_CONFIG
    from api.server import PortUnavailable, ensure_port_free
    from api.server import serve as serve_api
    from warehouse.db import database_url, redact

    try:
        ensure_port_free(host, port)
    except PortUnavailable as exc:
        raise fail(str(exc)) from None
    console.print(f"Coinfrs API on http://{host}:{port}/docs (database {redact(database_url())})", highlight=False)
    serve_api(host, port, workers, log_level="info", log_config=UVICORN_LOG_CONFIG)


@app.command("ui")
def ui(port: int = 3000) -> None:
    """Run the Dagster UI (dagster dev) on the same Dagster instance the CLI's closes are recorded in."""
    import subprocess

    from orchestration.instance import dagster_home

    env = dict(os.environ, DAGSTER_HOME=str(dagster_home()))
    root = Path(__file__).resolve().parent.parent
    console.print(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={env['DAGSTER_HOME']})", highlight=False)
    raise typer.Exit(subprocess.call([sys.executable, "-m", "dagster", "dev", "-w", str(root / "workspace.yaml"),
                                      "-p", str(port)], env=env, cwd=root))


# ----------------------------------------------------------------------------- demo


@app.command("demo")
def demo(entity: str = "northwind") -> None:
    """Set up and close the bundled sample fund end to end, then print the summary."""
    from ingestion.csv_files import CsvFile, import_csv
    from warehouse.db import database_url, redact
    from warehouse.entities import get_or_create_entity
    from warehouse.migrate import upgrade

    console.rule("Coinfrs demo")
    console.print(f"database: {redact(database_url())}", highlight=False)
    upgrade()
    console.print("migrations applied")
    with _engine().begin() as conn:
        target = get_or_create_entity(conn, entity)
        results = [import_csv(conn, target.id, "ledger", CsvFile.from_path(SAMPLE_DIR / "ledger.csv")),
                   import_csv(conn, target.id, "balances", CsvFile.from_path(SAMPLE_DIR / "balances.csv"))]
    for r in results:
        console.print(f"imported {r.file_name}: {r.rows} rows ({r.inserted} new)", highlight=False)
    from warehouse.calendar import close_date_of

    first = min(close_date_of(r.first_day, target.tz) for r in results if r.first_day)
    last = max(close_date_of(r.last_day, target.tz) for r in results if r.last_day)
    from samples.demo_binance import add_demo_binance_account

    add_demo_binance_account(_engine(), target, first, last, log=lambda line: console.print(line, highlight=False))
    from samples.chains.demo import add_demo_wallets

    add_demo_wallets(_engine(), target, first, last, log=lambda line: console.print(line, highlight=False))
    run_close(target.name, first, last)
    from warehouse.reports import list_breaks, realized_pnl_summary

    with _engine().connect() as conn:
        breaks = list_breaks(conn, target.id, first, last)
        pnl = realized_pnl_summary(conn, target.id, first, last, method="fifo", pool="universal")
    table = Table(title="breaks to explain (coinfrs recon breaks: expected, reported, every digit, the evidence)")
    for column in ("date", "account", "asset", "difference", "likeliest cause"):
        table.add_column(column, justify="right" if column == "difference" else "left", no_wrap=True)
    for b in breaks:
        top = b["causes"][0]["code"] if b.get("causes") else "unexplained"
        table.add_row(str(b["date"]), str(b["account"]), str(b["asset"]), _shown(str(b["difference"]), 8), top)
    out.print(table)
    out.print(f"realized PnL {first} .. {last} (FIFO, universal): proceeds {_shown(pnl['proceeds'])} USD, cost basis "
              f"{_shown(pnl['cost_basis'])} USD, gain {_shown(pnl['realized_gain'])} USD over {pnl['disposals']} disposals",
              highlight=False)
    out.print(f"""
Next:
  Dagster UI:  make ui        (or: .venv/bin/coinfrs ui) then open http://127.0.0.1:3000
  Read API:    .venv/bin/coinfrs apikey create --entity {target.name}
               make serve     (or: .venv/bin/coinfrs serve) then
               curl -H "X-API-Key: <key>" "http://127.0.0.1:8000/api/v1/closes?entity={target.name}&from={first}&to={last}"
  Reports:     .venv/bin/coinfrs recon breaks --entity {target.name} --from {first} --to {last} --json   (causes, evidence)
               .venv/bin/coinfrs pnl realized --entity {target.name} --from {first} --to {last} --json""", highlight=False)


def main() -> None:
    """The `coinfrs` command: no traceback reaches a user. Usage errors end as click ends them; a known error (an
    entity that does not exist, a database that does not answer) in one line and exit code 1; anything else in one
    line naming the error and exit code 2 (`COINFRS_DEBUG=1` shows the traceback). An archived entity, or a
    migration refused for the data it found, is a known error too (exit code 1)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from warehouse.entities import EntityArchived, EntityNotFound
    from warehouse.migrate import MigrationRefused

    try:
        app()
    except KeyboardInterrupt:
        console.print("aborted", highlight=False)
        sys.exit(130)
    except EntityNotFound as exc:
        say_error(f"{exc} (see `coinfrs entity list`)")
        sys.exit(1)
    except (EntityArchived, MigrationRefused) as exc:
        say_error(f"{exc}")
        sys.exit(1)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else "it does not answer"
        say_error(f"the database is not available: {reason}")
        sys.exit(1)
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42P01":  # undefined_table: a database without our schema
            raise_or_say(exc)
        say_error(f"the database has no Coinfrs schema ({str(exc.orig).splitlines()[0]}): run `coinfrs db upgrade`")
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a command line
        raise_or_say(exc)


def raise_or_say(exc: Exception) -> NoReturn:
    """An unexpected error: its traceback with ``COINFRS_DEBUG=1``, else one line naming it, exit code 2."""
    if os.environ.get("COINFRS_DEBUG"):
        raise exc
    say_error(f"{type(exc).__name__}: {exc} (set COINFRS_DEBUG=1 for the traceback)")
    sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
