"""Old spellings kept for one release: hidden top-level commands that run the new command's code after one note
line on stderr (`cxr export` -> `cxr run export`). The docs' CLI reference lists them from `renamed_to`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand

from cxr.cli.output import note

GOES_IN = "cxr 1.0"


def keep_old_spelling(app: typer.Typer, old: str, new: str, command: Callable[..., Any]) -> None:
    """`cxr OLD` runs `command` (registered as `cxr NEW` too), hidden from `--help`; the note comes before anything
    else, even before an option check fails or `--help` prints."""

    class OldSpelling(TyperCommand):
        renamed_to = new

        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
            note(f'"cxr {old}" is now "cxr {new}"; the old spelling goes in {GOES_IN}')
            return super().parse_args(ctx, args)

    app.command(old, hidden=True, cls=OldSpelling)(command)
