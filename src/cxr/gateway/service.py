"""The gateway as one object the web service starts and stops: the SCP, the intake thread, the outbox sender and,
for a PACS that cannot push, the DICOMweb puller. `serve/` hands it the recording predictor (`score`), so films from
the PACS are scored, guarded and listed exactly as uploads are."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from cxr.gateway.config import GatewayConfig
from cxr.gateway.dicomweb import DicomWebPuller
from cxr.gateway.intake import SOURCE, Intake, Score
from cxr.gateway.outbox import Outbox
from cxr.gateway.results import AlgorithmFacts, ScoredFilm
from cxr.gateway.scp import SUCCESS, StorageSCP
from cxr.gateway.sr import overlay_sc, read_sr, result_sr
from cxr.readingroom import ReadingRoom
from cxr.readingroom.schema import GUARD_FLAG, GUARD_PASS, DicomInstance, Film, OutboxItem
from cxr.readingroom.service import normal_class

log = logging.getLogger(__name__)

SPOOL = "dicom-spool"
# overlay(data, filename) -> the Grad-CAM overlay (H, W, 3) uint8 of the film, or None when Grad-CAM is unavailable
Overlay = Callable[[bytes, str], np.ndarray | None]


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        room: ReadingRoom,
        score: Score,
        algorithm: AlgorithmFacts,
        spool: Path,
        overlay: Overlay | None = None,
    ):
        self.config, self.room, self.algorithm, self.overlay = config, room, algorithm, overlay
        self.outbox = Outbox(room, config.send_to, config.ae_title, config.retry_seconds, config.max_retry_seconds)
        self.intake = Intake(room, config.spool or spool, config.frontal, score, self._on_scored)
        self.scp = StorageSCP(config, self._on_instance)
        self.puller = DicomWebPuller(config.pull, config.dicomweb_username) if config.pull else None
        self._stop = threading.Event()
        self._pull_thread = threading.Thread(target=self._pull_loop, name="cxr-gateway-pull", daemon=True)

    def start(self) -> None:
        self.intake.start()
        self.outbox.start()
        self.scp.start()
        if self.puller is not None:
            self._pull_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.scp.stop()
        self.intake.stop()
        self.outbox.stop()
        if self._pull_thread.is_alive():
            self._pull_thread.join(30)

    def status(self) -> dict[str, Any]:
        """What an operator checks first: is it listening, what came in (and why a film was not scored), what waits
        for the PACS and why. No patient data: counts, statuses, reasons and destinations."""
        with self.room.session() as session:
            by_status = dict(
                session.execute(select(DicomInstance.status, func.count()).group_by(DicomInstance.status)).all()
            )
            recent = session.execute(
                select(DicomInstance.received_at, DicomInstance.status, DicomInstance.reason, DicomInstance.calling_ae)
                .where(DicomInstance.status.in_(["skipped", "failed"]))
                .order_by(DicomInstance.id.desc())
                .limit(20)
            ).all()
            waiting = session.execute(
                select(
                    OutboxItem.destination, func.count(), func.max(OutboxItem.attempts), func.max(OutboxItem.last_error)
                )
                .where(OutboxItem.sent_at.is_(None))
                .group_by(OutboxItem.destination)
            ).all()
            sent = session.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.sent_at.is_not(None)))
        return {
            "ae_title": self.config.ae_title,
            "port": self.config.port,
            "listening": self.scp.server is not None,
            "allow": [p.model_dump() for p in self.config.allow],
            "send_to": [d.name for d in self.config.send_to],
            "pull": self.config.pull,
            "instances": by_status,
            "not_scored": [
                {"received_at": t.isoformat(), "status": st, "reason": reason, "from": ae}
                for t, st, reason, ae in recent
            ],
            "outbox": {
                "sent": sent,
                "waiting": [{"destination": d, "items": n, "attempts": a, "last_error": e} for d, n, a, e in waiting],
            },
        }

    # receiving --------------------------------------------------------------------------------------------------------

    def _on_instance(self, data: bytes, header: Dataset, sender: str) -> int:
        received = self.intake.receive(data, header, sender)
        if received.duplicate:
            log.info("DICOM gateway: an instance from %s was received before; not scored again", sender)
        return SUCCESS

    def pull_once(self) -> int:
        """Fetch what the PACS has that the gateway has not seen; returns how many instances were new."""
        new = 0
        for _sop_uid, data in self.puller.poll(self.intake.known):
            header = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
            new += not self.intake.receive(data, header, "pull", source="pull").duplicate
        return new

    def _pull_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.pull_once()
            except Exception as e:  # the PACS is down or answered nonsense: one line, try again next period
                log.warning("DICOM gateway: pull from %s failed (%s)", self.config.pull, str(e).splitlines()[0][:200])
            self._stop.wait(self.config.pull_seconds)

    # results ----------------------------------------------------------------------------------------------------------

    def scored_film(self, film_id: str) -> ScoredFilm:
        """The result as the reading room recorded it (so a result rebuilt after a crash is the same result)."""
        with self.room.session() as session:
            film = session.get(Film, film_id)
        verdict = {GUARD_PASS: True, GUARD_FLAG: False}.get(film.guard_verdict or "")
        return ScoredFilm(
            film_id=film.id,
            classes=list(film.classes),
            probabilities=list(film.probabilities),
            predicted=film.predicted,
            threshold=film.threshold,
            normal_class=normal_class(film.classes),
            in_distribution=verdict,
            guard_score=film.ood_score,
            guard_reason=film.guard_reason,
            algorithm=self.algorithm,
            for_diagnostic_use=self.config.for_diagnostic_use,
        )

    def _on_scored(self, header: Dataset, film_id: str) -> None:
        if not self.outbox.destinations or self.outbox.has(film_id, "result"):
            return
        scored = self.scored_film(film_id)
        sr = result_sr(header, scored, series_uid=generate_uid(), instance_uid=generate_uid())
        self.outbox.queue(film_id, "result", sr)
        if self.config.send_overlay and self.overlay is not None:
            try:
                self._queue_overlay(film_id)
            except (SQLAlchemyError, OSError):
                raise  # the database or disk: the film is tried again (the SR above is not queued twice)
            except Exception as e:  # no stored film (--no-store-images) or no Grad-CAM: the SR went; say so, once
                log.warning("DICOM gateway: no overlay for study %s (%s)", film_id, str(e).splitlines()[0][:200])

    def _queue_overlay(self, film_id: str) -> None:
        path = self.room.image_path(film_id)
        data = path.read_bytes()
        rgb = self.overlay(data, path.name)
        if rgb is None:
            return
        header = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        self.outbox.queue(
            film_id,
            "overlay",
            overlay_sc(
                header,
                rgb,
                series_uid=generate_uid(),
                instance_uid=generate_uid(),
                for_diagnostic_use=self.config.for_diagnostic_use,
            ),
        )

    def on_read(self, film_id: str, read: dict[str, Any]) -> None:
        """A reader's read of a film from the PACS goes back as a second SR (with `send_reads`)."""
        if not self.config.send_reads or not self.outbox.destinations:
            return
        with self.room.session() as session:
            film = session.get(Film, film_id)
        if film is None or film.source != SOURCE:
            return
        try:
            header = pydicom.dcmread(self.room.image_path(film_id), force=True, stop_before_pixels=True)
        except Exception as e:  # served with --no-store-images: the study's header is gone; the read stays in cxr
            log.warning("DICOM gateway: read of study %s not sent back (%s)", film_id, type(e).__name__)
            return
        sr = read_sr(
            header,
            self.scored_film(film_id),
            reader_label=read["label"],
            reader_name=read["reader"],
            read_version=int(read["version"]),
            series_uid=generate_uid(),
            instance_uid=generate_uid(),
        )
        self.outbox.queue(film_id, "read", sr)
