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


def print_cv_summary(summary: dict | None, out) -> None:
    """The pooled out-of-fold figures of `cxr train --cv`, and each fold's accuracy (None: a DDP rank > 0)."""
    if summary is None:
        return
    from cxr.evaluation.tables import headline

    folds = ", ".join(f"{a:.3f}" for a in summary["fold_accuracy"])
    console.print(f"[green]cross-validated[/] {summary['folds']} folds, {summary['n']} images scored out of fold "
                  f"(written to {out}/cv.json, predictions_oof.csv)")  # fmt: skip
    console.print(headline(summary))
    console.print(f"log loss {summary['log_loss']:.3f}   fold accuracies {folds}")
