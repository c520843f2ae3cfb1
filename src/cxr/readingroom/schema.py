"""The tables. Changing them means a new Alembic revision in migrations/versions (a test compares the two).

Times are naive UTC on both backends (SQLite keeps no zone). A film row is written once; a read is never updated:
a changed read is a new row with the next `version` for that film and reader, so the earlier one stays (audit).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
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
    study_date: Mapped[str | None] = mapped_column(String(8))  # DICOM StudyDate, YYYYMMDD as sent
    view_position: Mapped[str | None] = mapped_column(String(16))  # DICOM ViewPosition: PA, AP, ...
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


class DicomInstance(Base):
    """One DICOM instance the gateway received (C-STORE or pulled): recorded once, unique on its SOPInstanceUID, so a
    re-sent film is neither scored nor listed twice. Holds no patient identifier (the film row has the hash)."""

    __tablename__ = "dicom_instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    calling_ae: Mapped[str | None] = mapped_column(String(16))  # the sender's AE title ("pull" for pulled ones)
    source: Mapped[str] = mapped_column(String(16))  # cstore | pull
    spool_name: Mapped[str | None] = mapped_column(String(64))  # the file waiting in the spool; None once scored
    status: Mapped[str] = mapped_column(String(16), index=True)  # received | scored | skipped | failed
    reason: Mapped[str | None] = mapped_column(String(255))  # why skipped or failed, in plain words
    modality: Mapped[str | None] = mapped_column(String(16))
    view_position: Mapped[str | None] = mapped_column(String(16))
    film_id: Mapped[str | None] = mapped_column(String(32), index=True)  # the reading room's film, once scored


class OutboxItem(Base):
    """A DICOM object waiting to be sent to the PACS (a result SR, a reader's read SR, an overlay). Its bytes and UIDs
    are made once, when it is queued: a retry re-sends the same object, never a second one."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("sop_uid", "destination", name="uq_outbox_sop_destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    film_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # result | read | overlay
    destination: Mapped[str] = mapped_column(String(255))  # Destination.name: AE@host:port or a DICOMweb URL
    sop_uid: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the Part 10 file
    created_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)  # a sender holds it until then (several processes)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(String(255))
