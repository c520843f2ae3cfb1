"""Read-side queries: the worklist's filters and orders, current reads, and films as plain dicts for the API."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, case, exists, func, not_, or_, select
from sqlalchemy.orm import Session, aliased

from cxr.readingroom.schema import GUARD_FLAG, GUARD_UNKNOWN, INDETERMINATE, Film, Read, Reader

ORDERS = ("triage", "newest")


@dataclass(frozen=True)
class StudyFilter:
    unread: bool = False  # no reader has read the film
    flagged: bool = False  # the model calls it positive (not the normal class)
    disagreement: bool = False  # a reader's current read names another class than the model
    received_from: datetime | None = None
    received_to: datetime | None = None
    # the input guard's group: True only films it flagged ("check the input"), False only the others (the triage
    # list: passed, or not known), None both (a flagged film then sorts after every other in triage order)
    check_input: bool | None = None


def utc_naive(when: datetime | None) -> datetime | None:
    """The database's convention: naive UTC (an aware time is converted; a naive one is taken as UTC)."""
    if when is None or when.tzinfo is None:
        return when
    try:
        return when.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # within a day of year 1 or 9999 with a zone: as far as a datetime goes
        return datetime.max if when.year > 1 else datetime.min


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def current_reads():
    """Reads that no later version (same film, same reader) replaced."""
    later = aliased(Read)
    return not_(
        exists().where(later.film_id == Read.film_id, later.reader_id == Read.reader_id, later.version > Read.version)
    )


def disagreeing():
    """Films with a current read that names a class other than the model's ("indeterminate" is not a class)."""
    return exists().where(
        Read.film_id == Film.id, current_reads(), Read.label != Film.predicted, Read.label != INDETERMINATE
    )


def conditions(f: StudyFilter) -> list:
    out = []
    if f.unread:
        out.append(not_(exists().where(Read.film_id == Film.id)))
    if f.flagged:
        out.append(Film.flagged.is_(True))
    if f.disagreement:
        out.append(disagreeing())
    if f.check_input is not None:
        flagged_input = Film.guard_verdict == GUARD_FLAG
        out.append(flagged_input if f.check_input else or_(Film.guard_verdict.is_(None), not_(flagged_input)))
    if f.received_from is not None:
        out.append(Film.received_at >= utc_naive(f.received_from))
    if f.received_to is not None:
        out.append(Film.received_at < utc_naive(f.received_to))
    return out


def check_input_last():
    """Triage's first key: a film the guard flagged is never ranked among likely positives (0 before 1)."""
    return case((Film.guard_verdict == GUARD_FLAG, 1), else_=0)


def list_films(session: Session, f: StudyFilter, order: str, limit: int, offset: int) -> tuple[int, list[Film]]:
    where = and_(True, *conditions(f))
    total = session.scalar(select(func.count()).select_from(Film).where(where))
    keys = (
        [Film.received_at.desc(), Film.id]
        if order == "newest"
        else [check_input_last(), Film.positive_score.desc(), Film.received_at.desc(), Film.id]
    )
    films = session.scalars(select(Film).where(where).order_by(*keys).limit(limit).offset(offset)).all()
    return int(total or 0), list(films)


def reads_of(session: Session, film_ids: list[str], history: bool = False) -> dict[str, list[dict]]:
    """Per film, its reads oldest first: the current ones, or with `history` every version (the audit trail)."""
    if not film_ids:
        return {}
    query = select(Read, Reader.name).join(Reader, Reader.id == Read.reader_id).where(Read.film_id.in_(film_ids))
    if not history:
        query = query.where(current_reads())
    out: dict[str, list[dict]] = defaultdict(list)
    for read, name in session.execute(query.order_by(Read.created_at, Read.id)):
        out[read.film_id].append(read_dict(read, name))
    return out


def read_dict(read: Read, reader: str) -> dict:
    return {
        "id": read.id,
        "reader": reader,
        "label": read.label,
        "note": read.note,
        "version": read.version,
        "created_at": iso(read.created_at),
    }


def film_dict(film: Film, reads: list[dict]) -> dict:
    current = {r["reader"]: r for r in reads}  # oldest first: a later version of a reader's read wins
    disagree = [r["reader"] for r in current.values() if r["label"] not in (film.predicted, INDETERMINATE)]
    return {
        "id": film.id,
        "received_at": iso(film.received_at),
        "source": film.source,
        "filename": film.filename,
        "predicted": film.predicted,
        "probabilities": dict(zip(film.classes, film.probabilities)),
        "threshold": film.threshold,
        "positive_score": film.positive_score,
        "flagged": film.flagged,
        "ood_score": film.ood_score,
        "guard": {"verdict": film.guard_verdict or GUARD_UNKNOWN, "score": film.ood_score, "reason": film.guard_reason},
        "check_input": film.guard_verdict == GUARD_FLAG,  # out of the triage order: the guard flagged the film
        "model": {"id": film.model_id, "version": film.model_version, "architecture": film.architecture},
        "sha256": film.sha256,
        "image_stored": film.image_stored,
        "dicom": {
            "study_uid": film.study_uid,
            "series_uid": film.series_uid,
            "sop_uid": film.sop_uid,
            "accession": film.accession,
            "study_date": film.study_date,
            "view": film.view_position,
        },
        "patient_hash": film.patient_hash,
        "reads": reads,
        "disagreement": bool(disagree),
        "disagreeing_readers": disagree,
    }
