"""`coinfrs source ...`: exchange sources of an entity (add with a read-only key, test, sync, list). Thin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from orchestration.cli_output import fail
from rich.table import Table

source_app = typer.Typer(help="Exchange sources: encrypted read-only API keys, connectivity tests, syncs.",
                         no_args_is_help=True)
console = Console(stderr=True)
out = Console()

EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="Entity name or id.")]


_fail = fail  # orchestration/cli_output.py


def _engine():
    from warehouse.db import get_engine

    return get_engine()


def _known_errors() -> tuple[type[BaseException], ...]:
    from ingestion.credentials import CredentialError
    from ingestion.ccxt.client import SourceError
    from warehouse.entities import EntityNotFound

    return (CredentialError, SourceError, EntityNotFound, LookupError, ValueError)


@source_app.command("add")
def source_add(
    kind: Annotated[str, typer.Argument(help="Connector: binance, kraken, ccxt.<exchange id>, fireblocks.")],
    entity: EntityOpt,
    credentials_file: Annotated[Optional[Path], typer.Option(
        "--credentials-file", help='JSON {"api_key": ..., "api_secret": ...}; without it COINFRS_<KIND>_API_KEY and '
                                   "COINFRS_<KIND>_API_SECRET are read. Never pass a secret on the command line.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Source name in the entity (also its account name); default: the kind.")] = None,
    api_url: Annotated[Optional[str], typer.Option(help="Replace the exchange's hosts (a proxy or a local server).")] = None,
    since: Annotated[Optional[str], typer.Option(help="First day to fetch on the first sync (YYYY-MM-DD).")] = None,
    setting: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Other settings KEY=VALUE: rate_limit_ms, timeout_ms, retry_attempts, retry_initial_seconds, "
                      "retry_max_seconds, isolated_pairs (Binance).")] = None,
    replace: Annotated[bool, typer.Option(help="Replace the credentials of an existing source of that name.")] = False,
    create: Annotated[bool, typer.Option("--create", help="Create the entity if no entity has this name.")] = False,
) -> None:
    """Add an exchange source to an existing, active entity (or a new one with --create). The key must be
    read-only: it is checked first and refused otherwise."""
    from ingestion.connectors import is_known_kind
    from ingestion.sources import KINDS, add_source, read_credentials
    from orchestration.cli import _entity_to_write

    if not is_known_kind(kind):
        raise _fail(f"unknown source kind {kind!r}; known: {', '.join(KINDS)}")
    config: dict[str, object] = {}
    for item in setting or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise _fail(f"--set {item!r}: expected KEY=VALUE")
        config[key.strip()] = value.strip()
    if api_url:
        config["api_url"] = api_url
    if since:
        config["since"] = since
    engine = _engine()
    try:
        credentials = read_credentials(kind, credentials_file)
        with engine.begin() as conn:
            record = _entity_to_write(conn, entity, create=create)
        info, restrictions = add_source(engine, record, kind, name or kind, credentials, config, replace=replace)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    console.print(f"added source {info.name!r} ({info.kind}) to {record.name}: the key is read-only "
                  f"(reading {'on' if restrictions.get('enableReading') else 'off'}), stored encrypted "
                  f"(AES-256-GCM, key {info.key_id})", highlight=False)


@source_app.command("test")
def source_test(entity: EntityOpt,
                source: Annotated[Optional[str], typer.Option("--source", help="Source name; default: every source.")] = None,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts: per source, ok or "
                                                                     "its error, permissions and balances.")] = False) -> None:
    """Check connectivity and permissions of the entity's sources and print what they hold now."""
    from ingestion.credentials import list_sources
    from ingestion.sources import inspect_source
    from warehouse.entities import resolve_entity

    engine = _engine()
    failed = False
    try:
        with engine.connect() as conn:
            record = resolve_entity(conn, entity)
            names = [source] if source else [s.name for s in list_sources(conn, record.id, enabled_only=False)]
        if not names:
            raise _fail(f"{record.name} has no sources; add one with `coinfrs source add`")
        found = []
        for name in names:
            try:
                report = inspect_source(engine, record, name)
            except _known_errors() as error:
                failed = True
                found.append({"source": name, "ok": False, "error": str(error)})
                if not as_json:
                    console.print(f"[bold red]{name}: FAILED[/] {error}", highlight=False)
                continue
            enabled = sorted(k for k, v in report.restrictions.items() if v is True)
            summary = report.summary or f"read-only key; enabled: {', '.join(enabled) or 'none'}; {report.markets} markets"
            found.append({"source": name, "ok": True, "error": None, "summary": summary, "enabled": enabled,
                          "markets": report.markets, "balances": report.balances})
            if as_json:
                continue
            out.print(f"{name}: OK — {summary}", highlight=False)
            for account_type, held in report.balances.items():
                out.print(f"  {account_type}: " + (", ".join(f"{a} {q}" for a, q in sorted(held.items())) or "empty"),
                          highlight=False)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if as_json:
        print(json.dumps(found))
    if failed:
        raise typer.Exit(1)


@source_app.command("sync")
def source_sync(entity: EntityOpt,
                source: Annotated[Optional[str], typer.Option("--source", help="Source name; default: every enabled source.")] = None,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts: per source, its status, "
                                                                     "new records and snapshots, calls.")] = False) -> None:
    """Fetch everything new from the entity's sources into staging (incremental, resumable)."""
    from ingestion.sources import sync_entity_sources
    from warehouse.entities import resolve_active_entity

    engine = _engine()
    try:
        with engine.connect() as conn:
            record = resolve_active_entity(conn, entity)  # an archived entity is not imported into
        results = sync_entity_sources(engine, record, names=[source] if source else None)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if as_json:
        print(json.dumps([{"source": r.source, "kind": r.kind, "status": r.status, "message": r.message,
                           "records_inserted": dict(r.stats.records_inserted) if r.stats else {},
                           "snapshots_inserted": r.stats.snapshots_inserted if r.stats else 0,
                           "calls": r.stats.calls if r.stats else 0, "errors": r.errors} for r in results]))
    elif not results:
        console.print(f"{record.name} has no sources configured: nothing to sync", highlight=False)
    else:
        for result in results:
            stats = result.stats
            inserted = sum(stats.records_inserted.values()) if stats else 0
            line = f"{result.source}: {result.status}; {inserted} new records"
            if stats:
                line += f", {stats.snapshots_inserted} new balance snapshots, {stats.calls} API calls"
            out.print(line, highlight=False)
            if result.message:
                console.print(f"  {result.message}", highlight=False)
    if any(r.status != "succeeded" for r in results):
        raise typer.Exit(1)


@source_app.command("list")
def source_list(entity: EntityOpt,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The entity's sources, their last sync and their circuit breaker (never their credentials)."""
    from ingestion.breakers import breaker_states
    from ingestion.credentials import list_sources
    from warehouse.entities import resolve_entity

    try:
        with _engine().connect() as conn:
            record = resolve_entity(conn, entity)
            sources = list_sources(conn, record.id, enabled_only=False)
            breakers = breaker_states(conn, record.id)
    except _known_errors() as error:
        raise _fail(str(error)) from None
    if as_json:
        print(json.dumps([{"name": s.name, "kind": s.kind, "enabled": s.enabled,
                           "last_sync_at": s.last_sync_at.isoformat() if s.last_sync_at else None,
                           "last_sync_status": s.last_sync_status, "last_sync_message": s.last_sync_message,
                           "circuit_breaker": breakers.get(s.name)} for s in sources]))
        return
    table = Table("name", "kind", "enabled", "last sync", "status", "circuit breaker", "message")
    for s in sources:
        table.add_row(s.name, s.kind, "yes" if s.enabled else "no",
                      s.last_sync_at.isoformat(timespec="seconds") if s.last_sync_at else "-",
                      s.last_sync_status or "-", (breakers.get(s.name) or {}).get("summary", "closed")[:80],
                      (s.last_sync_message or "")[:80])
    out.print(table)
