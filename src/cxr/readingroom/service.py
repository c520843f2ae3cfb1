"""The reading room's write side and its entry point: record a prediction, record a read (readers and keys:
readers.py, mixed in).

Every write is one transaction: a film row with its stored image, or a read, is all there or not there at all, and
so is its access-log entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cxr.errors import CxrError
from cxr.readingroom import access_log, db, queries
from cxr.readingroom.access_log import DIRECT, Actor
from cxr.readingroom.identity import dicom_ids, load_salt, patient_hash
from cxr.readingroom.queries import StudyFilter
from cxr.readingroom.readers import BadReaderKey, ReaderExists, ReaderKeys, UnknownReader  # noqa: F401 (re-exported)
from cxr.readingroom.schema import GUARD_FLAG, GUARD_PASS, INDETERMINATE, Film, Read
from cxr.readingroom.store import ImageStore, image_suffix, sha256

DB_FILE = "reading.db"
IMAGES_DIR = "images"
NORMAL_NAMES = ("normal", "no finding", "no_finding", "healthy")
MAX_NOTE = 2000


class UnknownFilm(CxrError):
    """404: no film with that id."""


class BadRead(CxrError):
    """422: a label the film's model does not know, or a note too long."""


@dataclass(frozen=True)
class ModelFacts:
    id: str
    version: str
    architecture: str
    classes: Sequence[str]
    threshold: float | None


def normal_class(classes: Sequence[str]) -> str:
    """The class triage puts last: one named like "normal", else the first (a binary model's negative)."""
    return next((c for c in classes if c.strip().lower() in NORMAL_NAMES), classes[0])


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ReadingRoom(ReaderKeys):
    """One database (and image store) shared by the web service, the folder watcher and the CLI."""

    def __init__(self, url: str, image_root: str | Path | None, salt: bytes):
        self.url = url
        self.engine = db.connect(url)
        self.store = ImageStore(image_root) if image_root is not None else None
        self.salt = salt
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def for_run(
        cls, run_dir: str | Path, url: str | None = None, store_images: bool = True, images: str | Path | None = None
    ) -> ReadingRoom:
        """`cxr serve RUN`'s defaults: SQLite at RUN/reading.db, images in RUN/images, the salt of the run."""
        run_dir = Path(run_dir)
        url = url or db.sqlite_url(run_dir / DB_FILE)
        image_root = (Path(images) if images else default_images(url, run_dir)) if store_images else None
        return cls(url, image_root, load_salt(run_dir))

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._sessions()

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back (nothing half-written) when it raises."""
        with self._sessions() as session, session.begin():
            session.connection(execution_options=db.WRITE)  # SQLite: BEGIN IMMEDIATE (see db.py)
            yield session

    # films ----------------------------------------------------------------------------------------------------------

    def record(
        self,
        data: bytes,
        filename: str | None,
        model: ModelFacts,
        probabilities: Sequence[float],
        predicted: str,
        *,
        source: str = "upload",
        ood_score: float | None = None,
        seconds: float | None = None,
        actor: Actor = DIRECT,
        in_distribution: bool | None = None,
        guard_reason: str | None = None,
        input_stats: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store the image (unless the store is off) and one film row, and log who sent it; returns the film as the
        API shows it. `in_distribution`: the input guard's verdict (None: no guard); False puts the film in the
        worklist's "check the input" group, out of the triage order."""
        digest, suffix = sha256(data), image_suffix(data, filename)
        ids = dicom_ids(data, filename)
        if self.store is not None:
            self.store.put(data, digest, suffix)  # before the row: a committed film never lacks its image
        normal = normal_class(model.classes)
        probs = [float(p) for p in probabilities]
        film = Film(
            id=uuid.uuid4().hex,
            received_at=now(),
            source=source,
            filename=_printable(filename)[-255:] or None,
            sha256=digest,
            image_stored=self.store is not None,
            image_ext=suffix,
            model_id=model.id,
            model_version=model.version,
            architecture=model.architecture,
            classes=list(model.classes),
            probabilities=probs,
            predicted=predicted,
            threshold=model.threshold,
            positive_score=1.0 - probs[list(model.classes).index(normal)],
            flagged=predicted != normal,
            ood_score=None if ood_score is None else float(ood_score),
            guard_verdict=None if in_distribution is None else (GUARD_PASS if in_distribution else GUARD_FLAG),
            guard_reason=_printable(guard_reason)[:255] or None,
            input_stats=input_stats,
            seconds=seconds,
            study_uid=ids.study_uid,
            series_uid=ids.series_uid,
            sop_uid=ids.sop_uid,
            accession=ids.accession,
            study_date=ids.study_date,
            view_position=ids.view_position,
            patient_hash=patient_hash(self.salt, ids.patient_id),
        )
        with self.writing() as session:
            session.add(film)
            access_log.append(session, actor, "upload", film.id, source)
        return queries.film_dict(film, [])

    def has_film(self, digest: str, source: str) -> bool:
        with self.session() as session:
            query = select(Film.id).where(Film.sha256 == digest, Film.source == source).limit(1)
            return session.scalar(query) is not None

    def studies(
        self, f: StudyFilter = StudyFilter(), order: str = "triage", limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        with self.session() as session:
            total, films = queries.list_films(session, f, order, limit, offset)
            reads = queries.reads_of(session, [x.id for x in films])
            items = [queries.film_dict(x, reads.get(x.id, [])) for x in films]
        return {"total": total, "limit": limit, "offset": offset, "order": order, "items": items}

    def study(self, film_id: str, actor: Actor | None = None) -> dict[str, Any]:
        """One film with its full read history (every version: the audit trail); `actor`: log the view."""
        with self.session() as session:
            film = session.get(Film, film_id)
            if film is None:
                raise UnknownFilm(f"no study {film_id!r}; list them with GET /v1/studies")
            history = queries.reads_of(session, [film_id], history=True).get(film_id, [])
        out = queries.film_dict(film, history)
        out["reads"] = list({r["reader"]: r for r in history}.values())
        out["history"] = history
        if actor is not None:
            self.log_access(actor, "view_study", film_id)
        return out

    def image_path(self, film_id: str, actor: Actor | None = None) -> Path:
        """The stored film; `actor`: log the view first (no entry, no film)."""
        with self.session() as session:
            film = session.get(Film, film_id)
        if film is None:
            raise UnknownFilm(f"no study {film_id!r}; list them with GET /v1/studies")
        if self.store is None or not film.image_stored:
            raise UnknownFilm(f"the image of study {film_id} was not stored (served with --no-store-images)")
        path = self.store.path(film.sha256, film.image_ext)
        if not path.is_file():
            raise UnknownFilm(f"the image of study {film_id} is missing from {self.store.root}")
        if actor is not None:
            self.log_access(actor, "view_image", film_id)
        return path

    # reads -----------------------------------------------------------------------------------------------------------

    def add_read(
        self, film_id: str, key: str | None, label: str, note: str | None = None, client: str | None = None
    ) -> dict[str, Any]:
        """Record a reader's label (and log it, from `client`); a reader's earlier read of the film stays, the new
        one is the next version."""
        for attempt in range(5):  # belt and braces: the reader lock already orders one reader's reads
            try:
                return self._add_read(film_id, key, label, note, client)
            except IntegrityError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _add_read(
        self, film_id: str, key: str | None, label: str, note: str | None, client: str | None
    ) -> dict[str, Any]:
        with self.writing() as session:
            reader = self.reader_for_key(session, key, lock=True)
            film = session.get(Film, film_id)
            if film is None:
                raise UnknownFilm(f"no study {film_id!r}; list them with GET /v1/studies")
            choices = [*film.classes, INDETERMINATE]
            label = next((c for c in choices if c.lower() == label.strip().lower()), None) or _bad_label(label, choices)
            if note is not None and len(note) > MAX_NOTE:
                raise BadRead(f"the note has {len(note)} characters; at most {MAX_NOTE}")
            if note is not None and "\x00" in note:
                raise BadRead("the note contains a NUL character")
            version = session.scalar(
                select(func.coalesce(func.max(Read.version), 0)).where(
                    Read.film_id == film_id, Read.reader_id == reader.id
                )
            )
            read = Read(
                film_id=film_id,
                reader_id=reader.id,
                version=version + 1,
                label=label,
                note=note or None,
                created_at=now(),
            )
            session.add(read)
            session.flush()
            reader.last_used_at = read.created_at
            access_log.append(
                session,
                Actor(reader.name, reader.role, client),
                "read",
                film_id,
                f"read {read.id}, version {read.version}",
            )
            return queries.read_dict(read, reader.name) | {"film_id": film_id}


def _printable(name: str | None) -> str:
    """A file name as stored: control characters (NUL breaks PostgreSQL text) dropped."""
    return "".join(c for c in name or "" if c.isprintable())


def database_has_keys(url: str) -> bool:
    """Whether the reading room at `url` holds a working reader or admin key (a SQLite file not made yet: no)."""
    path = db.sqlite_path(url)
    if path is not None and not path.is_file():
        return False
    room = ReadingRoom(url, None, salt=b"")
    try:
        return room.has_active_keys()
    finally:
        room.close()


def _bad_label(label: str, choices: list[str]) -> str:
    raise BadRead(f"label {label!r} is not one of this model's classes or {INDETERMINATE!r}: {', '.join(choices)}")


def default_images(url: str, run_dir: Path) -> Path:
    """Beside a SQLite file; for a server database, in the run directory (share it, or pass --images)."""
    db_file = db.sqlite_path(url)
    return (db_file.parent if db_file is not None else run_dir) / IMAGES_DIR
