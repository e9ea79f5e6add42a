"""How every CLI command ends on an error: one line on stderr, ``error: <message>``, then a documented exit code.

The line is never wrapped (a script or a log reads one line per error, whatever the terminal's width) and the message
is printed as text, never as Rich markup (a record id or a field may contain ``[...]``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

errors = Console(stderr=True)


def say_error(message: str) -> None:
    """Print ``message`` as one error line on stderr."""
    line = Text("error:", style="bold red")
    line.append(" " + " ".join(str(message).split("\n")))
    errors.print(line, soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as the command's one error line; return the Exit to raise (``raise fail(...) from None``)."""
    say_error(message)
    return typer.Exit(code)


ProgressFor = Callable[[Path], "Callable[[int], None] | None"]


@contextmanager
def file_progress(paths: Sequence[Path], console: Console = errors) -> Iterator[ProgressFor]:
    """A progress bar per file (bytes read, speed, time left) on ``console`` while the block runs, cleared at its
    end; only on a terminal: a pipe, a log or a ``--json`` reader gets nothing. Yields, for a path, the callback to
    give its reader (``CsvFile.on_progress``), or None when nothing is shown."""
    if not console.is_terminal:
        yield lambda path: None
        return
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        tasks = {path: progress.add_task(path.name, total=path.stat().st_size) for path in paths}

        def progress_for(path: Path) -> Callable[[int], None]:
            task = tasks[path]
            return lambda done: progress.update(task, completed=done)

        yield progress_for
