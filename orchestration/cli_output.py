"""How every CLI command ends on an error: one line on stderr, ``error: <message>``, then a documented exit code.

The line is never wrapped (a script or a log reads one line per error, whatever the terminal's width) and the message
is printed as text, never as Rich markup (a record id or a field may contain ``[...]``)."""

from __future__ import annotations

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
