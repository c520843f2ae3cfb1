"""Readers, admins and their keys, and the access log's entry points: the part of `ReadingRoom` about people.

A revoked key stops working at the next request: every request looks its key up, nothing is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cxr.errors import CxrError
from cxr.readingroom import access_log, keys, queries
from cxr.readingroom.access_log import DIRECT, Actor, LogFilter
from cxr.readingroom.schema import Read, Reader

LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key (a write per request)
BAD_KEY = (
    "missing, unknown or revoked reader key: send it in the X-Reader-Key header (`cxr readers add NAME` makes one)"
)


class BadReaderKey(CxrError):
    """401: no reader has that key (or it was revoked)."""


class UnknownReader(CxrError):
    """404: no reader with that name."""


class ReaderExists(CxrError):
    """409: the name is taken."""


@dataclass(frozen=True)
class Person:
    """Who a key belongs to, detached from the session."""

    name: str
    role: str

    def actor(self, client: str | None = None) -> Actor:
        return Actor(self.name, self.role, client)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ReaderKeys:
    """Mixed into ReadingRoom, which provides `session()` and `writing()` (a write transaction)."""

    def add_reader(self, name: str, role: str = "reader", actor: Actor = DIRECT) -> str:
        """Create a reader (or an admin); returns the key, shown once: only a salted hash of it is kept."""
        name = name.strip()
        if not keys.valid_name(name):
            raise CxrError("a reader's name must be 1 to 100 characters, without control characters or '/'")
        if role not in keys.ROLES:
            raise CxrError(f"role {role!r}: pick one of {', '.join(keys.ROLES)}")
        key, key_id = keys.new_key()
        salt = keys.new_salt()
        try:
            with self.writing() as session:
                session.add(
                    Reader(
                        name=name,
                        role=role,
                        key_id=key_id,
                        key_salt=salt,
                        key_hash=keys.hash_key(salt, key),
                        created_at=_now(),
                    )
                )
                access_log.append(session, actor, "add_reader", detail=f"{name} ({role})")
        except IntegrityError:
            raise ReaderExists(f"a reader named {name!r} exists already; pick another name") from None
        return key

    def revoke_reader(self, name: str, actor: Actor = DIRECT) -> dict[str, Any]:
        """Revoke a key at once; the row stays, so their reads still name them."""
        with self.writing() as session:
            reader = session.scalar(select(Reader).where(Reader.name == name))
            if reader is None:
                raise UnknownReader(f"no reader named {name!r}; see `cxr readers list`")
            reader.revoked_at = reader.revoked_at or _now()
            access_log.append(session, actor, "revoke_reader", detail=f"{name} ({reader.role})")
            return {"name": reader.name, "role": reader.role, "revoked_at": queries.iso(reader.revoked_at)}

    def readers(self) -> list[dict[str, Any]]:
        """Names, roles, when added, last used and revoked, reads recorded; never a key or its hash."""
        with self.session() as session:
            counts = dict(session.execute(select(Read.reader_id, func.count()).group_by(Read.reader_id)).all())
            rows = session.scalars(select(Reader).order_by(Reader.name)).all()
            return [
                {
                    "name": r.name,
                    "role": r.role,
                    "created_at": queries.iso(r.created_at),
                    "last_used_at": queries.iso(r.last_used_at),
                    "revoked_at": queries.iso(r.revoked_at),
                    "reads": counts.get(r.id, 0),
                }
                for r in rows
            ]

    def has_active_keys(self) -> bool:
        """Whether any reader or admin key works: then every /v1 route needs a key."""
        with self.session() as session:
            return bool(session.scalar(select(exists().where(Reader.revoked_at.is_(None)))))

    def _find(self, session: Session, key: str | None, lock: bool = False) -> Reader | None:
        if not key or not key.startswith(keys.PREFIX) or len(key) > 200:
            return None
        key_id = keys.key_id_of(key)
        if key_id is not None:
            candidates = [session.scalar(select(Reader).where(Reader.key_id == key_id))]
        else:  # a key made before cxr 0.9: few rows, each checked against its own salt
            candidates = list(session.scalars(select(Reader).where(Reader.key_id.is_(None))))
        found = next((r for r in candidates if r is not None and keys.matches(r.key_salt, r.key_hash, key)), None)
        if found is not None and lock:  # PostgreSQL: FOR UPDATE serialises one reader's concurrent reads
            found = session.scalar(
                select(Reader).where(Reader.id == found.id).with_for_update().execution_options(populate_existing=True)
            )
        return found

    def reader_for_key(self, session: Session, key: str | None, lock: bool = False) -> Reader:
        """The reader holding `key` (not revoked), else BadReaderKey."""
        reader = self._find(session, key, lock)
        if reader is None or reader.revoked_at is not None:
            raise BadReaderKey(BAD_KEY)
        return reader

    def authenticate(self, key: str | None) -> Person | None:
        """Who holds `key` now (None: unknown or revoked); notes when it was last used."""
        with self.session() as session:
            reader = self._find(session, key)
        if reader is None or reader.revoked_at is not None:
            return None
        if reader.last_used_at is None or _now() - reader.last_used_at >= LAST_USED_EVERY:
            with self.writing() as session:
                session.get(Reader, reader.id).last_used_at = _now()
        return Person(reader.name, reader.role)

    def reader_name(self, key: str | None) -> str:
        person = self.authenticate(key)
        if person is None:
            raise BadReaderKey(BAD_KEY)
        return person.name

    # the access log -------------------------------------------------------------------------------------------------

    def log_access(self, actor: Actor, action: str, film_id: str | None = None, detail: str | None = None) -> None:
        with self.writing() as session:
            access_log.append(session, actor, action, film_id, detail)

    def access_log(self, f: LogFilter = LogFilter(), limit: int = 100, offset: int = 0) -> dict[str, Any]:
        with self.session() as session:
            return access_log.entries(session, f, limit, offset)
