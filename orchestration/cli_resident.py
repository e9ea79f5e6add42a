"""`coinfrs resident`: the resident close process (orchestration/resident.py) that makes `coinfrs close` start warm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Annotated

import typer
from rich.console import Console

from orchestration.cli_output import say_error

resident_app = typer.Typer(help="A resident process with Dagster and Great Expectations imported: `coinfrs close` "
                                "forks from it instead of importing them (~1 s instead of ~12 s for a day).",
                           no_args_is_help=True)
console = Console(stderr=True)
out = Console()
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _status_line(status: dict) -> str:
    return (f"resident close process {status['pid']} on {status['socket']}, up {time.time() - status['started']:.0f}s, "
            f"{status['modules']} modules loaded")


@resident_app.command("start")
def resident_start(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for it to be ready.")] = 120.0,
    idle_minutes: Annotated[float, typer.Option(help="It stops after this many minutes without a close (0: never).")]
    = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Start it in the background (its log: <data_dir>/resident.log); nothing to do when one already runs. It stops
    by itself after --idle-minutes without a close, and when code it loaded changes (that close runs in-process)."""
    from orchestration.resident import PROJECT_ROOT, ping, socket_path
    from warehouse.settings import get_settings

    path = socket_path()
    status = ping(path)
    if status is None:
        log = get_settings().data_dir / "resident.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as handle:
            process = subprocess.Popen([sys.executable, "-m", "orchestration.resident", str(idle_minutes)],
                                       cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=dict(os.environ))
        deadline = time.monotonic() + timeout
        while status is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            status = ping(path)
        if status is None:
            why = f"ended with exit code {process.returncode}" if process.poll() is not None else \
                f"did not answer within {timeout:.0f}s"
            say_error(f"the resident process {why} (see {log})")
            raise typer.Exit(1)
    status = {**status, "socket": str(path)}
    if as_json:
        out.print_json(json.dumps(status))
    else:
        console.print(_status_line(status), highlight=False)


@resident_app.command("status")
def resident_status(as_json: JsonOpt = False) -> None:
    """Whether one runs (exit code 1 when none does)."""
    from orchestration.resident import ping, socket_path

    status = ping(socket_path())
    if as_json:
        out.print_json(json.dumps({**status, "socket": str(socket_path())} if status else {"running": False}))
    elif status:
        console.print(_status_line({**status, "socket": str(socket_path())}), highlight=False)
    else:
        console.print("no resident close process: `coinfrs close` imports Dagster and Great Expectations itself",
                      highlight=False)
    if status is None:
        raise typer.Exit(1)


@resident_app.command("stop")
def resident_stop() -> None:
    """Stop it (closes running in its children go on to their end)."""
    from orchestration.resident import stop

    console.print("stopped" if stop() else "no resident close process was running", highlight=False)
