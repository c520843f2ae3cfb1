"""The root `cxr` app and its entry point `main`: every command module registers its commands here, and `main` turns
known user errors into one line on stderr with exit code 2."""

from __future__ import annotations

import logging
import sys
import warnings

import typer

from cxr.cli import audit, data, evaluate, monitor, predict, reading, run, serve, site, sweep, train, weights
from cxr.cli.output import PlainLogFormatter, print_error
from cxr.errors import CxrError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Chest X-ray classification: train, evaluate, predict, explain and serve.",
)
# `--help` lists the commands in this order (train, evaluate, report, ...), then the groups (data, run, site, ...)
for module in (train, evaluate, predict, serve, monitor, sweep, data, run, site, weights, reading, audit):
    module.register(app)


def _setup_logging() -> None:
    cxr_log = logging.getLogger("cxr")
    cxr_log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)  # plain lines: a log read without a terminal must not be re-wrapped
    handler.setFormatter(PlainLogFormatter())
    cxr_log.addHandler(handler)
    cxr_log.propagate = False
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning vs torch 2.13 internals, not the user's
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")


def main() -> None:
    """Entry point: known user errors become `error: ...` on stderr with exit code 2 (usage errors too)."""
    _setup_logging()
    try:
        code = app(standalone_mode=False)  # not standalone: bad flags reach us, not click's multi-line panel
    except CxrError as e:
        print_error(str(e))
        sys.exit(2)
    except typer.TyperException as e:  # click's usage errors (typer vendors click): bad flag or value, no command
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # `cxr data` alone: its help, as click would show it
            e.show()
        else:
            print_error(f"{e.format_message()} (see `{ctx.command_path if ctx else 'cxr'} --help`)")
        sys.exit(e.exit_code)
    except typer.Abort:  # Ctrl-C while parsing or prompting
        print_error("aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
