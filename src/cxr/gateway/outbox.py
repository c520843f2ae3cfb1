"""The outbox: DICOM results waiting in the reading-room database until the PACS has them.

An item's bytes (and so its UIDs) are made once, when it is queued; a failed send is retried with doubling back-off
(`retry_seconds`, up to `max_retry_seconds`), and an item is marked sent the moment the PACS acknowledges it, so it is
never sent again. Several service processes on one database share the outbox: a sender takes an item by a lease (a
conditional UPDATE, the same on SQLite and PostgreSQL), so two processes do not send it at once. The one gap left: a
crash after the PACS stored an item and before it is marked sent re-sends it with the same SOPInstanceUID, which a
PACS files as the same instance (Orthanc: stored once).
"""

from __future__ import annotations

import io
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from cxr.gateway.config import Destination
from cxr.gateway.dicomweb import part10_bytes, stow
from cxr.gateway.scu import SendFailed, is_success, send_cstore
from cxr.readingroom import ReadingRoom
from cxr.readingroom.schema import OutboxItem
from cxr.readingroom.service import now

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)  # longer than any send; a crashed sender's items are taken again after it
BATCH = 20  # items per association


class Outbox:
    def __init__(
        self,
        room: ReadingRoom,
        destinations: Sequence[Destination],
        calling_ae: str = "CXR",
        retry_seconds: float = 5.0,
        max_retry_seconds: float = 600.0,
        send: Callable[[list[Dataset], Destination], list[int]] | None = None,
    ):
        self.room, self.destinations = room, {d.name: d for d in destinations}
        self.calling_ae, self.retry_seconds, self.max_retry_seconds = calling_ae, retry_seconds, max_retry_seconds
        self._send = send or self._send_to
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="cxr-gateway-outbox", daemon=True)

    def queue(self, film_id: str, kind: str, ds: Dataset) -> int:
        """Queue `ds` for every destination (idempotent: an object already queued is not queued again)."""
        payload, queued = part10_bytes(ds), 0
        for name in self.destinations:
            item = OutboxItem(
                film_id=film_id,
                kind=kind,
                destination=name,
                sop_uid=str(ds.SOPInstanceUID),
                payload=payload,
                created_at=now(),
                attempts=0,
                next_attempt_at=now(),
            )
            try:
                with self.room.writing() as session:
                    session.add(item)
                queued += 1
            except IntegrityError:
                pass
        self._wake.set()
        return queued

    def has(self, film_id: str, kind: str) -> bool:
        with self.room.session() as session:
            query = select(OutboxItem.id).where(OutboxItem.film_id == film_id, OutboxItem.kind == kind).limit(1)
            return session.scalar(query) is not None

    def pending(self) -> int:
        with self.room.session() as session:
            return session.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.sent_at.is_(None)))

    # sending ----------------------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.destinations:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.send_due()
            except Exception as e:  # the database is down: try again in a second
                log.error("gateway outbox: %s", type(e).__name__)
                sent = 0
            if not sent:
                self._wake.wait(1.0)
                self._wake.clear()

    def _claim(self) -> list[OutboxItem]:
        t = now()
        due = (
            select(OutboxItem.id)
            .where(OutboxItem.sent_at.is_(None), OutboxItem.next_attempt_at <= t)
            .where(or_(OutboxItem.lease_until.is_(None), OutboxItem.lease_until < t))
            .order_by(OutboxItem.id)
            .limit(BATCH * max(1, len(self.destinations)))
        )
        claimed = []
        with self.room.session() as session:
            ids = session.scalars(due).all()
        for item_id in ids:
            with self.room.writing() as session:
                taken = session.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id == item_id, OutboxItem.sent_at.is_(None))
                    .where(or_(OutboxItem.lease_until.is_(None), OutboxItem.lease_until < t))
                    .values(lease_until=t + LEASE)
                ).rowcount
                if taken:
                    claimed.append(session.get(OutboxItem, item_id))
        return claimed

    def send_due(self) -> int:
        """Send what is due now; returns how many items the PACS took."""
        by_destination: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in self._claim():
            by_destination[item.destination].append(item)
        taken = 0
        for name, items in by_destination.items():
            destination = self.destinations.get(name)
            if destination is None:  # configured before, not now: keep it for when it is configured again
                self._failed(items, f"destination {name} is not configured now")
                continue
            datasets = [pydicom.dcmread(io.BytesIO(item.payload)) for item in items]
            try:
                statuses = self._send(datasets, destination)
            except SendFailed as e:
                self._failed(items, str(e))
                continue
            ok = [item for item, status in zip(items, statuses) if is_success(status)]
            bad = [(item, status) for item, status in zip(items, statuses) if not is_success(status)]
            self._sent(ok)
            for item, status in bad:
                self._failed([item], f"{name} answered status 0x{status:04X}")
            taken += len(ok)
        return taken

    def _send_to(self, datasets: list[Dataset], destination: Destination) -> list[int]:
        if destination.kind == "dicomweb":
            return stow(datasets, destination)
        return send_cstore(datasets, destination, calling_ae=self.calling_ae)

    def _sent(self, items: list[OutboxItem]) -> None:
        if not items:
            return
        with self.room.writing() as session:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_([i.id for i in items]))
                .values(sent_at=now(), lease_until=None, attempts=OutboxItem.attempts + 1, last_error=None)
            )

    def _failed(self, items: list[OutboxItem], reason: str) -> None:
        log.warning("gateway outbox: %d result(s) not sent, retried later: %s", len(items), reason)
        t = now()
        with self.room.writing() as session:
            for item in items:
                delay = min(self.retry_seconds * 2 ** min(item.attempts, 30), self.max_retry_seconds)
                session.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id == item.id)
                    .values(
                        attempts=item.attempts + 1,
                        next_attempt_at=t + timedelta(seconds=delay),
                        lease_until=None,
                        last_error=reason[:255],
                    )
                )
