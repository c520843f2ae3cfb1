"""The CLI's consoles and its one-line error and warning printers, shared by `cli.py` and `cli_data.py`."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def print_error(message: str) -> None:
    """One line, as plain text (a path with brackets must not be read as rich markup)."""
    err_console.print(Text("error: ", style="red") + Text(" ".join(message.split())), highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """As plain text: a file name with brackets must not be read as rich markup."""
    err_console.print(Text("warning: ", style="yellow") + Text(message), highlight=False, soft_wrap=True)
