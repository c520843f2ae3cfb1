"""From a received instance to a scored film: spool it durably, record it once, score the frontal films through the
service's recording predictor, and queue the result for the PACS.

A C-STORE is acknowledged only after the bytes are on disk (fsync) and the instance row is committed, so a crash after
the acknowledgement loses nothing: at start-up every instance still "received" is scored. The film row, the instance
row and the outbox are three transactions; each step checks what the previous one left (the film is found by its
SOPInstanceUID), so a crash between them neither loses a result nor makes a second one.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cxr.atomic import write_bytes_durable
from cxr.gateway.config import FrontalRules
from cxr.gateway.rules import frontal
from cxr.readingroom import ReadingRoom
from cxr.readingroom.identity import header_text
from cxr.readingroom.schema import DicomInstance, Film
from cxr.readingroom.service import now

log = logging.getLogger(__name__)

RECEIVED, SCORED, SKIPPED, FAILED = "received", "scored", "skipped", "failed"
SOURCE = "dicom"  # the films' `source` in the reading room
RETRY_SECONDS = 30.0  # a quiet intake looks this often for films a failure left waiting (older than this)

# score(data, filename, sender) -> the reading room's film id; raises on a film it cannot read
Score = Callable[[bytes, str, str], str]
# on_scored(header, film id): queue the results (an outbox write); must be idempotent for one film
OnScored = Callable[[Dataset, str], None]


@dataclass(frozen=True)
class Received:
    instance_id: int | None  # None: a duplicate (already received)
    duplicate: bool


class Intake:
    def __init__(self, room: ReadingRoom, spool: Path, rules: FrontalRules, score: Score, on_scored: OnScored):
        self.room, self.spool, self.rules, self.score, self.on_scored = room, Path(spool), rules, score, on_scored
        self.spool.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="cxr-gateway-intake", daemon=True)
        self.idle = threading.Event()  # set while nothing waits to be scored (tests and the benchmark wait on it)

    # receiving (the SCP's and the puller's threads) -----------------------------------------------------------------

    def receive(self, data: bytes, header: Dataset, sender: str, source: str = "cstore") -> Received:
        """Spool and record one instance; a SOPInstanceUID seen before is a duplicate (nothing is kept)."""
        name = f"{uuid.uuid4().hex}.dcm"
        path = write_bytes_durable(self.spool / name, data)
        row = DicomInstance(
            sop_uid=str(header.SOPInstanceUID).strip()[:64],
            sop_class_uid=str(header.get("SOPClassUID", "")).strip()[:64],
            study_uid=header_text(header, "StudyInstanceUID"),
            received_at=now(),
            calling_ae=sender.partition("@")[0][:16],  # the AE title (the SCP logs AE@host)
            source=source,
            spool_name=name,
            status=RECEIVED,
            modality=header_text(header, "Modality", 16),
            view_position=header_text(header, "ViewPosition", 16),
        )
        try:
            with self.room.writing() as session:
                session.add(row)
        except IntegrityError:
            path.unlink(missing_ok=True)
            return Received(None, True)
        self.idle.clear()
        self._queue.put(row.id)
        return Received(row.id, False)

    def known(self, sop_uid: str) -> bool:
        with self.room.session() as session:
            return session.scalar(select(DicomInstance.id).where(DicomInstance.sop_uid == sop_uid)) is not None

    # scoring (one thread) ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        with self.room.session() as session:
            waiting = session.scalars(select(DicomInstance.id).where(DicomInstance.status == RECEIVED)).all()
        for instance_id in waiting:  # received before a restart: scored now
            self._queue.put(instance_id)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(60)

    def _run(self) -> None:
        while True:
            if self._queue.empty():
                self.idle.set()
            try:
                instance_id = self._queue.get(timeout=RETRY_SECONDS)
            except queue.Empty:
                self._requeue_stuck()
                continue
            if instance_id is None:
                return
            try:
                self.process(instance_id)
            except Exception as e:  # the database is down: the row stays "received" and is tried again later
                log.error("gateway: instance %s not scored now (%s); tried again later", instance_id, type(e).__name__)

    def _requeue_stuck(self) -> None:
        """Instances still "received" a while after arrival (the database was down when they were due): again."""
        try:
            with self.room.session() as session:
                stuck = session.scalars(
                    select(DicomInstance.id).where(
                        DicomInstance.status == RECEIVED,
                        DicomInstance.received_at < now() - timedelta(seconds=RETRY_SECONDS),
                    )
                ).all()
        except Exception as e:  # still down: the next quiet period tries again
            log.error("gateway: cannot look for films waiting to be scored (%s)", type(e).__name__)
            return
        for instance_id in stuck:
            self.idle.clear()
            self._queue.put(instance_id)

    def process(self, instance_id: int) -> str:
        """Score one received instance (or skip it by the frontal rules); returns its new status."""
        with self.room.session() as session:
            row = session.get(DicomInstance, instance_id)
        if row is None or row.status != RECEIVED:
            return row.status if row is not None else FAILED
        path = self.spool / (row.spool_name or "")
        try:
            data = path.read_bytes()
        except OSError:
            return self._finish(row, FAILED, "the spooled file is missing; send the film again")
        header = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        verdict = frontal(header, self.rules)
        if not verdict.score:
            log.info("gateway: instance %s not scored: %s", instance_id, verdict.reason)
            return self._finish(row, SKIPPED, verdict.reason, path)
        film_id = self._film_of(row.sop_uid)  # scored before a crash: not twice
        if film_id is None:
            try:
                film_id = self.score(data, f"{row.sop_uid}.dcm", row.calling_ae or "")
            except (SQLAlchemyError, OSError):
                raise  # the database or disk, not the film: it stays "received" and is tried again
            except Exception as e:  # a film the model cannot read: one line, and the next film goes on
                if getattr(e, "status_code", 400) >= 500:  # the service's answer for "the reading room is down"
                    raise
                reason = str(getattr(e, "detail", e)).splitlines()[0][:200]
                log.warning("gateway: instance %s could not be scored (%s)", instance_id, reason)
                return self._finish(row, FAILED, reason, path)
        try:
            self.on_scored(header, film_id)
        except (SQLAlchemyError, OSError):
            raise  # the database or disk: the instance stays "received" and is tried again
        except Exception as e:  # a header highdicom cannot make a result from: scored and listed, nothing sent
            reason = f"no result for the PACS ({type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''})"
            log.warning("gateway: instance %s: %s", instance_id, reason)
            return self._finish(row, SCORED, reason, path, film_id)
        return self._finish(row, SCORED, None, path, film_id)

    def _film_of(self, sop_uid: str) -> str | None:
        with self.room.session() as session:
            query = select(Film.id).where(Film.sop_uid == sop_uid, Film.source == SOURCE).limit(1)
            return session.scalar(query)

    def _finish(
        self, row: DicomInstance, status: str, reason: str | None, path: Path | None = None, film_id: str | None = None
    ) -> str:
        with self.room.writing() as session:
            stored = session.get(DicomInstance, row.id)
            stored.status, stored.reason, stored.film_id, stored.spool_name = status, reason, film_id, None
        if path is not None:
            path.unlink(missing_ok=True)  # the reading room keeps the film itself (its image store)
        return status

    def wait_idle(self, timeout: float) -> bool:
        return self.idle.wait(timeout)
