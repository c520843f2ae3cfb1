"""`cxr readers add|list|revoke` and `cxr feedback export|stats`: reader and admin keys, and the reading room's loop
back to training. Key changes and exports are in the access log under the user at this machine (`cxr audit-log`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from cxr.cli.checks import folder_out
from cxr.cli.output import GROUPS_PANEL, console, print_table, warn
from cxr.errors import CxrError

DB_HELP = (
    "reading-room database: a SQLAlchemy URL (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB) or a run "
    "directory (its reading.db); default for `cxr serve`: RUN/reading.db"
)
SERVE_DB_HELP = (
    "where every prediction is recorded: a URL, sqlite:///PATH/reading.db or "
    "postgresql+psycopg://USER@HOST/DB (default: SQLite at RUN/reading.db)"
)
IMAGES_HELP = "the image store (default: images/ beside a SQLite file, or in the run directory)"


def register(app: typer.Typer) -> None:
    readers = typer.Typer(no_args_is_help=True, help="Readers and admins of the reading room and their keys.")
    for name, command in (("add", readers_add), ("list", readers_list), ("revoke", readers_revoke)):
        readers.command(name)(command)
    app.add_typer(readers, name="readers", rich_help_panel=GROUPS_PANEL)
    feedback = typer.Typer(no_args_is_help=True, help="Reader feedback: export reviewed films, agreement statistics.")
    feedback.command("export")(feedback_export)
    feedback.command("stats")(feedback_stats)
    app.add_typer(feedback, name="feedback", rich_help_panel=GROUPS_PANEL)


def open_room(db: str, images: Path | None = None, create: bool = False):
    """The room named by --db (a URL, a run directory or a .db file); the CLI records no films, so no salt.

    Only `readers add` may create a SQLite file: elsewhere a typo in --db must not leave an empty database behind.
    """
    from cxr.readingroom import ReadingRoom
    from cxr.readingroom.db import sqlite_path, sqlite_url
    from cxr.readingroom.service import DB_FILE, default_images

    run_dir = None
    if "://" not in db:
        path = Path(db)
        if path.is_dir():
            run_dir, path = path, path / DB_FILE
        elif path.suffix != ".db":
            raise CxrError(f"--db {db}: not a folder, a .db file or a database URL; pass the run directory you serve")
        if not create and not path.is_file():
            raise CxrError(f"--db {db}: no reading-room database at {path}; serve the run first (`cxr serve RUN`)")
        db = sqlite_url(path)
    elif not create and (sqlite_file := sqlite_path(db)) is not None and not sqlite_file.is_file():
        raise CxrError(f"--db {db}: no reading-room database at {sqlite_file}; serve the run first (`cxr serve RUN`)")
    if images is None and (run_dir is not None or sqlite_path(db) is not None):
        images = default_images(db, run_dir)
    return ReadingRoom(db, images, salt=b"")


DB = typer.Option(..., "--db", help=DB_HELP)


def readers_add(
    name: str = typer.Argument(..., help="the reader's name, as it will appear on every read"),
    db: str = DB,
    role: str = typer.Option(
        "reader",
        help="reader: reads films, records reads; admin: also adds and revokes "
        "readers (POST/DELETE /v1/readers) and reads the access log",
    ),
) -> None:
    """Create a reader (or an admin) and print their key once (only a salted hash is stored: a lost key means
    revoking it and adding the reader under another name)."""
    from cxr.readingroom.access_log import cli_actor

    room = open_room(db, create=True)  # readers may be added before the first film arrives
    key = room.add_reader(name, role, cli_actor())
    console.print(f"{role} {name!r} added; their key (shown once, send it as X-API-Key or paste it on the page):")
    print(key)


def readers_list(db: str = DB) -> None:
    """Readers and admins: role, when added, last used and revoked, how many reads each recorded (never keys)."""
    table = Table("name", "role", "added", "last used", "revoked", "reads")
    for r in open_room(db).readers():
        table.add_row(
            r["name"], r["role"], r["created_at"], r["last_used_at"] or "", r["revoked_at"] or "", str(r["reads"])
        )
    print_table(table)


def readers_revoke(name: str = typer.Argument(..., help="reader whose key stops working"), db: str = DB) -> None:
    """Revoke a reader's key: it stops working at the next request; their reads stay, under their name."""
    from cxr.readingroom.access_log import cli_actor

    open_room(db).revoke_reader(name, cli_actor())
    console.print(f"reader {name!r} revoked")


def feedback_export(
    db: str = DB,
    out: Path = typer.Option(..., help="folder for images/<label>/ and manifest.csv", callback=folder_out),
    images: Path | None = typer.Option(None, help=IMAGES_HELP),
) -> None:
    """Reviewed films and a manifest (label = the readers') that `cxr train --data OUT/manifest.csv` accepts."""
    from cxr.readingroom.access_log import cli_actor
    from cxr.readingroom.feedback import export_feedback

    result = export_feedback(open_room(db, images), out, cli_actor())
    for why, n in result.skipped.items():
        warn(f"{n} film(s) left out: {why}")
    console.print(
        f"wrote {result.manifest}: {result.rows} film(s), {result.disagreed} where the readers disagreed "
        f"with the model; train on it with `cxr train --data {result.manifest}` (add --weights to fine-tune)"
    )


def feedback_stats(
    db: str = DB,
    n_bootstrap: int = typer.Option(1000, min=0, help="bootstrap resamples for the 95% intervals (0: none)"),
    seed: int = typer.Option(0, help="bootstrap seed"),
    out: Path | None = typer.Option(None, help="also write the figures as JSON here"),
) -> None:
    """Cohen's kappa of the model vs each reader and between readers, with bootstrap intervals."""
    from cxr.atomic import write_text_atomic
    from cxr.readingroom.feedback import agreement_stats

    stats = agreement_stats(open_room(db), n_bootstrap, seed)
    table = Table(
        "a",
        "b",
        "films",
        "disagree",
        "kappa",
        "95% CI",
        title=f"agreement on {stats['films']} reviewed film(s), classes {', '.join(stats['classes'])}",
    )
    for p in stats["pairs"]:
        kappa = "-" if p["kappa"] is None else f"{p['kappa']:.3f}"
        ci = "-" if not p["ci"] else f"{p['ci'][0]:.3f} to {p['ci'][1]:.3f}"
        table.add_row(p["a"], p["b"], str(p["n"]), str(p["disagree"]), kappa, ci)
    print_table(table)
    if stats["other_models_films"]:
        warn(f"{stats['other_models_films']} film(s) read under a model with other classes left out")
    if out is not None:
        write_text_atomic(out, json.dumps(stats, indent=2))
        console.print(f"wrote {out}")
