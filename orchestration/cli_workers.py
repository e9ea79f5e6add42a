"""`coinfrs worker`: Celery workers for the distributed close, and closes that run on them (orchestration.distributed)."""

from __future__ import annotations

import json
import os
from datetime import date
from typing import Annotated

import typer
from rich.console import Console

from orchestration.cli_output import fail

worker_app = typer.Typer(help="Celery workers that run the close's steps (the distributed close).",
                         no_args_is_help=True)
console = Console(stderr=True)
out = Console()


_fail = fail  # orchestration/cli_output.py


def _redacted_broker() -> str:
    from sqlalchemy.engine import make_url

    from warehouse.settings import get_settings

    url = get_settings().celery_broker_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show the scheme only
        return url.split(":", 1)[0] + "://..."


def _broker_reachable() -> str | None:
    """None when the broker answers, else why not (one line, no secret)."""
    from kombu import Connection

    from warehouse.settings import get_settings

    try:
        with Connection(get_settings().celery_broker_url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises the transport's own errors
        return f"the Celery broker {_redacted_broker()} does not answer ({type(exc).__name__}); start Redis or set " \
               "COINFRS_CELERY_BROKER_URL"
    return None


@worker_app.command("start")
def worker_start(
    concurrency: Annotated[int, typer.Option(min=1, help="Steps this worker runs at once (processes).")] = 1,
    name: Annotated[str | None, typer.Option(help="Worker name (default: Celery's, from the host name).")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "warning",
) -> None:
    """Run a Celery worker in the foreground that takes close steps from the broker (Ctrl-C stops it after its step)."""
    from orchestration.distributed import worker_command

    problem = _broker_reachable()
    if problem:
        raise _fail(problem)
    from orchestration.instance import dagster_home

    dagster_home()  # the storage URL of the CLI's instance, which the runs' steps open (orchestration/instance.py)
    command = worker_command(concurrency=concurrency, name=name, loglevel=loglevel)
    console.print(f"worker {name or '(default name)'} on {_redacted_broker()}, queue dagster, {concurrency} at once",
                  highlight=False)
    os.execv(command[0], command)


@worker_app.command("status")
def worker_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The workers that answer on the broker."""
    from celery import Celery

    from warehouse.settings import get_settings

    problem = _broker_reachable()
    if problem:
        raise _fail(problem)
    replies = Celery(broker=get_settings().celery_broker_url).control.ping(timeout=2.0) or []
    names = sorted(host for reply in replies for host in reply)
    if as_json:
        out.print_json(json.dumps({"broker": _redacted_broker(), "workers": names}))
        return
    out.print(f"{len(names)} worker(s) on {_redacted_broker()}" + "".join(f"\n  {n}" for n in names), highlight=False)


@worker_app.command("close")
def worker_close(
    entity: Annotated[list[str], typer.Option("--entity", "-e", help="Entity name or id (repeat for several).")],
    date_from: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    date_to: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Close entities over a range on the workers: one run per entity, submitted together (fresh forward per entity)."""
    from orchestration.close_runner import CloseRunError, cli_instance, validate_range
    from orchestration.distributed import run_entity_closes
    from reconciliation.staleness import close_starts
    from warehouse.db import get_engine
    from warehouse.entities import EntityArchived, EntityNotFound, resolve_active_entity

    try:
        start, end = date.fromisoformat(date_from), date.fromisoformat(date_to)
    except ValueError as exc:
        raise _fail(f"--from/--to: {exc}") from None
    try:
        validate_range(start, end)
    except CloseRunError as exc:
        raise _fail(str(exc)) from None
    problem = _broker_reachable()
    if problem:
        raise _fail(problem)
    engine = get_engine()
    try:
        with engine.connect() as conn:
            entities = [resolve_active_entity(conn, ref) for ref in entity]
            starts = close_starts(conn, [e.id for e in entities], start, end)  # fresh forward, per entity
    except (EntityNotFound, EntityArchived) as exc:
        raise _fail(str(exc)) from None
    first = min(starts.values())
    console.print(f"closing {len(entities)} entit{'y' if len(entities) == 1 else 'ies'} {first}..{end} on the workers"
                  + ("" if first == start else " (each entity from its own earliest stale day)"), highlight=False)
    runs = run_entity_closes([(e.id, e.name) for e in entities], start, end, instance=cli_instance(), starts=starts)
    if as_json:
        out.print_json(json.dumps([r.__dict__ for r in runs]))
    else:
        for r in runs:
            out.print(f"{r.entity}: {'closed' if r.success else 'FAILED: ' + (r.error or '')} (run {r.run_id[:8]})",
                      highlight=False)
    if not all(r.success for r in runs):
        raise typer.Exit(1)
