"""The access log: who saw or did what to which film, when, from where. Rows are only ever added (the migration's
triggers refuse UPDATE and DELETE), like reads.

Written in the same transaction as what it records where there is one (an upload, a read, a reader change), and
before the answer otherwise (a film view, an export): when the log cannot be written, the film is not shown.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cxr.readingroom import queries
from cxr.readingroom.schema import AccessEntry

# upload: a film received (page, API, watched folder); view_study: its record and reads; view_image: the film itself;
# read: a read recorded; export: the film copied out by `cxr feedback export`; add_reader / revoke_reader: key changes
ACTIONS = ("upload", "view_study", "view_image", "read", "export", "add_reader", "revoke_reader")


@dataclass(frozen=True)
class Actor:
    """Who: a reader's or admin's name, "api key" (the shared $CXR_API_KEY), "anonymous" (no key needed), or the
    operating-system user of a command on the machine; and from where (an IP address, "cli@HOST")."""

    name: str
    role: str
    client: str | None = None


WATCHER = Actor("watch folder", "service", None)
DIRECT = Actor("python", "local", None)  # ReadingRoom called from Python, without saying who


def cli_actor() -> Actor:
    """The person at this machine's command line (`cxr readers`, `cxr feedback export`)."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without /etc/passwd entry)
        user = "unknown user"
    return Actor(user[:100], "local", f"cli@{socket.gethostname()}"[:100])


def append(
    session: Session,
    actor: Actor,
    action: str,
    film_id: str | None = None,
    detail: str | None = None,
    when: datetime | None = None,
) -> None:
    """Add one entry to the session's transaction."""
    if action not in ACTIONS:
        raise ValueError(f"unknown access-log action {action!r}")
    when = when or datetime.now(UTC).replace(tzinfo=None)
    session.add(
        AccessEntry(
            at=when,
            actor=actor.name[:100],
            role=actor.role[:16],
            client=(actor.client or None) and actor.client[:100],
            action=action,
            film_id=film_id,
            detail=(detail or None) and detail[:255],
        )
    )


@dataclass(frozen=True)
class LogFilter:
    actor: str | None = None
    action: str | None = None
    film_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def entries(session: Session, f: LogFilter = LogFilter(), limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Entries newest first, with the total that match."""
    where = []
    if f.actor is not None:
        where.append(AccessEntry.actor == f.actor)
    if f.action is not None:
        where.append(AccessEntry.action == f.action)
    if f.film_id is not None:
        where.append(AccessEntry.film_id == f.film_id)
    if f.since is not None:
        where.append(AccessEntry.at >= queries.utc_naive(f.since))
    if f.until is not None:
        where.append(AccessEntry.at < queries.utc_naive(f.until))
    total = session.scalar(select(func.count()).select_from(AccessEntry).where(*where))
    rows = session.scalars(
        select(AccessEntry)
        .where(*where)
        .order_by(AccessEntry.at.desc(), AccessEntry.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    items = [
        {
            "id": r.id,
            "at": queries.iso(r.at),
            "actor": r.actor,
            "role": r.role,
            "client": r.client,
            "action": r.action,
            "film_id": r.film_id,
            "detail": r.detail,
        }
        for r in rows
    ]
    return {"total": int(total or 0), "limit": limit, "offset": offset, "items": items}
