"""Engines and migrations: one URL names the database (SQLite file or PostgreSQL server), Alembic brings it to the
current schema before the first request, and SQLite gets the settings that make several writers safe. Engines hide
statement parameters in their errors: a logged database error never carries a file name or a patient hash.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from cxr.errors import CxrError
from cxr.extras import require

BUSY_TIMEOUT_MS = 30_000
WRITE = {"cxr_write": True}  # execution option: this transaction writes (SQLite takes the write lock up front)
MIGRATION_LOCK = 0x63787231  # "cxr1": PostgreSQL advisory lock, so two processes starting at once migrate once
MIGRATIONS = "cxr.readingroom:migrations"  # shipped in the package: no alembic.ini to install or find
URL_HELP = "use sqlite:///PATH/reading.db or postgresql+psycopg://USER@HOST:PORT/DB"


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases or an in-memory SQLite)."""
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def _sqlite_settings(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below): pysqlite's own is deferred
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; a kill -9 loses no commit
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection) -> None:
        # a deferred transaction that reads then writes fails at once (SQLITE_BUSY) when another process wrote in
        # between; IMMEDIATE waits its turn (busy_timeout) instead
        writes = connection.get_execution_options().get("cxr_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def connect(url: str) -> Engine:
    """An engine for `url`, migrated to the current schema (`alembic upgrade head`): an upgrade keeps every record."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CxrError(f"--db {url!r} is not a database URL; {URL_HELP}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise CxrError(f"--db: {backend!r} databases are not supported; {URL_HELP}")
    db_file = sqlite_path(url)
    if db_file is not None:
        if not db_file.parent.is_dir():
            raise CxrError(f"--db: folder {db_file.parent} does not exist; create it or pick another path")
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, hide_parameters=True)
        _sqlite_settings(engine)
    else:
        if parsed.get_driver_name() == "psycopg":
            require("pg", "psycopg")  # not installed: a one-line error naming cxr[pg]
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    try:
        upgrade(engine)
    except OperationalError as e:
        engine.dispose()
        reason = " ".join(str(e.orig).split())[:200]
        raise CxrError(f"cannot open database {parsed.render_as_string(hide_password=True)}: {reason}") from None
    return engine


def upgrade(engine: Engine, script_location: str = MIGRATIONS, revision: str = "head") -> None:
    """Run the migrations (by default the shipped ones) up to `revision`, on PostgreSQL under an advisory lock."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    with engine.connect().execution_options(**WRITE) as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
        connection.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
