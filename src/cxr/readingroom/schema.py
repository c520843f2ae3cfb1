"""The tables. Changing them means a new Alembic revision in migrations/versions (a test compares the two).

Times are naive UTC on both backends (SQLite keeps no zone). A film row is written once; a read is never updated:
a changed read is a new row with the next `version` for that film and reader, so the earlier one stays (audit).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

INDETERMINATE = "indeterminate"
GUARD_PASS, GUARD_FLAG, GUARD_UNKNOWN = "pass", "flag", "unknown"


class Base(DeclarativeBase):
    pass


class Film(Base):
    """One received image and the model's prediction for it (the API calls it a study: /v1/studies/{id})."""

    __tablename__ = "films"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex, made by the service
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    source: Mapped[str] = mapped_column(String(16))  # upload | watch
    filename: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    image_stored: Mapped[bool] = mapped_column(Boolean)
    image_ext: Mapped[str] = mapped_column(String(8))  # suffix the stored copy and exports carry (.png, .dcm, ...)
    model_id: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[str] = mapped_column(String(64))
    classes: Mapped[list] = mapped_column(JSON)
    probabilities: Mapped[list] = mapped_column(JSON)  # in `classes` order
    predicted: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float | None] = mapped_column(Float)
    positive_score: Mapped[float] = mapped_column(Float, index=True)  # triage key: 1 - P(normal class)
    flagged: Mapped[bool] = mapped_column(Boolean, index=True)  # predicted class is not the normal one
    ood_score: Mapped[float | None] = mapped_column(Float)  # the input guard's score, when the model has one
    # the guard's verdict: "pass", or "flag" (unlike the training films: the worklist's "check the input" group);
    # None: not known (a model without a guard, or a film recorded before cxr stored it)
    guard_verdict: Mapped[str | None] = mapped_column(String(8), index=True)
    guard_reason: Mapped[str | None] = mapped_column(String(255))  # why it was flagged, in plain words
    input_stats: Mapped[dict | None] = mapped_column(JSON)  # what the guard read: width, height, colourfulness, ...
    seconds: Mapped[float | None] = mapped_column(Float)
    study_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    sop_uid: Mapped[str | None] = mapped_column(String(64))
    accession: Mapped[str | None] = mapped_column(String(64))
    patient_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # HMAC-SHA256(salt, PatientID)


class Reader(Base):
    """A person with a key: a reader (reads films, records reads) or an admin (also adds and revokes readers).

    Only a salted hash of the key is kept (cxr.readingroom.keys); `key_id`, the key's public part, finds the row.
    """

    __tablename__ = "readers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16), server_default="reader")  # reader | admin
    key_id: Mapped[str | None] = mapped_column(String(16), unique=True)  # None: a key made before cxr 0.9
    key_salt: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # HMAC-SHA256(salt, SHA-256(key))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)  # updated at most once a minute


class Read(Base):
    """A reader's label for a film. The current read of (film, reader) is the one with the highest version."""

    __tablename__ = "reads"
    __table_args__ = (
        UniqueConstraint("film_id", "reader_id", "version", name="uq_reads_film_reader_version"),
        Index("ix_reads_film_reader", "film_id", "reader_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    film_id: Mapped[str] = mapped_column(String(32), ForeignKey("films.id"))
    reader_id: Mapped[int] = mapped_column(Integer, ForeignKey("readers.id"))
    version: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(64))  # one of the film's classes, or "indeterminate"
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class AccessEntry(Base):
    """Who saw or did what, when, from where: film views, uploads, reads, exports, reader changes. Append-only: the
    migration adds triggers that refuse UPDATE and DELETE on both backends."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)  # a reader's name, "api key", "anonymous", a user
    role: Mapped[str] = mapped_column(String(16))  # reader | admin | api-key | anonymous | local | service
    client: Mapped[str | None] = mapped_column(String(100))  # IP address, or "cli@HOST" for the command line
    action: Mapped[str] = mapped_column(String(16), index=True)  # see cxr.readingroom.access_log.ACTIONS
    film_id: Mapped[str | None] = mapped_column(String(32), index=True)  # no foreign key: the log outlives films
    detail: Mapped[str | None] = mapped_column(String(255))
