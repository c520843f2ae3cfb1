"""The CLI's consoles and its one-line error, warning and note printers, shared by every command module."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

# soft_wrap: a line is never broken at the console's width. Without a terminal rich assumes 80 columns, and a
# message with a long path would otherwise arrive in a log or a notebook as two lines. Tables still fit the width.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
GROUPS_PANEL = "Command groups"  # `cxr --help` lists the groups (data, run, site, ...) apart from the commands


def print_table(table: Table) -> None:
    """A table at its natural width when the console is narrower: a name or a figure is never cut to `…`
    (a narrow terminal wraps the long lines instead; a log or a notebook keeps them whole)."""
    natural = console.measure(table, options=console.options.update(width=10_000)).maximum
    width = console.width
    console.width = max(width, natural)  # print(width=) is capped at the console's width, so widen it for this table
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


class PlainLogFormatter(logging.Formatter):
    """`message` for info, `warning: message` above it: one unwrapped line per record, as `warn()` prints."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno <= logging.INFO else f"{record.levelname.lower()}: {message}"


def display_path(path: Path, roots: list[Path]) -> str:
    """A file as the user named it: relative to the input folder it was found in, else as given."""
    for root in roots:
        if root.is_dir():
            try:
                return str(Path(path).relative_to(root))
            except ValueError:
                continue
    return str(path)


def print_error(message: str) -> None:
    """One line, as plain text (a path with brackets must not be read as rich markup)."""
    err_console.print(Text("error: ", style="red") + Text(" ".join(message.split())), highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """As plain text: a file name with brackets must not be read as rich markup."""
    err_console.print(Text("warning: ", style="yellow") + Text(message), highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """One plain line on stderr, e.g. that a command has a new spelling."""
    err_console.print(Text("note: ", style="cyan") + Text(message), highlight=False, soft_wrap=True)


def print_cv_summary(summary: dict | None, out) -> None:
    """The pooled out-of-fold figures of `cxr train --cv`, and each fold's accuracy (None: a DDP rank > 0)."""
    if summary is None:
        return
    from cxr.evaluation.tables import headline

    folds = ", ".join(f"{a:.3f}" for a in summary["fold_accuracy"])
    console.print(
        f"[green]cross-validated[/] {summary['folds']} folds, {summary['n']} images scored out of fold "
        f"(written to {out}/cv.json, predictions_oof.csv)"
    )
    console.print(headline(summary))
    console.print(f"log loss {summary['log_loss']:.3f}   fold accuracies {folds}")
