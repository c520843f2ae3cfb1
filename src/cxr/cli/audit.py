"""`cxr audit-log`: the reading room's access log (who saw or did what to which film, when, from where)."""

from __future__ import annotations

import json
from datetime import datetime

import typer
from rich.table import Table

from cxr.cli.output import print_table
from cxr.cli.reading import DB
from cxr.errors import CxrError


def register(app: typer.Typer) -> None:
    app.command("audit-log")(audit_log)


def audit_log(
    db: str = DB,
    who: str | None = typer.Option(None, "--who", help="only this actor (a reader's name, 'api key', a user)"),
    action: str | None = typer.Option(
        None, help="only this action: upload, view_study, view_image, read, export, add_reader, revoke_reader"
    ),
    study: str | None = typer.Option(None, help="only this study id"),
    since: datetime | None = typer.Option(None, help="at or after (ISO 8601, UTC)"),
    until: datetime | None = typer.Option(None, help="before (ISO 8601, UTC)"),
    limit: int = typer.Option(100, min=1, help="entries to show, newest first"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line instead of a table"),
) -> None:
    """The access log: every film view, upload, read, export and reader change, newest first. Entries are only ever
    added; the database refuses to change or delete them."""
    from cxr.cli.reading import open_room
    from cxr.readingroom.access_log import ACTIONS, LogFilter

    if action is not None and action not in ACTIONS:
        raise CxrError(f"--action {action!r}: pick one of {', '.join(ACTIONS)}")
    log = open_room(db).access_log(LogFilter(who, action, study, since, until), limit)
    if as_json:
        for entry in log["items"]:
            print(json.dumps(entry))
        return
    table = Table(
        "when (UTC)",
        "who",
        "role",
        "from",
        "action",
        "study",
        "detail",
        title=f"{len(log['items'])} of {log['total']} access-log entries",
    )
    for e in log["items"]:
        table.add_row(
            e["at"], e["actor"], e["role"], e["client"] or "", e["action"], e["film_id"] or "", e["detail"] or ""
        )
    print_table(table)
