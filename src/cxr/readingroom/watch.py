"""`cxr serve --watch DIR`: films that appear in a folder (the simplest modality hookup) are predicted and recorded
like uploads. Files are left where they are; each is ingested once, also across restarts (by content hash).

Hand-written polling rather than inotify (watchdog): a network share, where modalities often drop files, delivers
no change events, and one listing per second of a drop folder costs nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from cxr.data.images import DICOM_MAGIC_END, is_dicom, is_image_file
from cxr.errors import CxrError
from cxr.readingroom.store import sha256

log = logging.getLogger(__name__)


class FolderWatcher:
    """Poll `folder`; a file whose size and mtime held still for one poll is handed to `ingest(path)` once."""

    def __init__(self, folder: str | Path, ingest: Callable[[Path], str | None], room, poll_seconds: float = 1.0):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CxrError(f"--watch {self.folder}: not a folder; create it or pass the folder films arrive in")
        self.ingest, self.room, self.poll_seconds = ingest, room, poll_seconds
        self._seen: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) when last looked at
        self._done: dict[Path, tuple[int, int]] = {}  # path -> the version ingested (or found unreadable)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cxr-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as e:  # the watcher must outlive a bad file or a database hiccup; the next poll retries
                log.error("watch %s: poll failed (%s)", self.folder, type(e).__name__)  # no message: it may name a file
            self._stop.wait(self.poll_seconds)

    def candidates(self) -> list[Path]:
        """Image files, and files without a suffix that are DICOM (modalities often write `IM0001`); not hidden ones
        (a copy in progress is often a hidden temp file)."""
        found = []
        for path in sorted(self.folder.rglob("*")):
            if path.name.startswith(".") or not path.is_file():
                continue
            if is_image_file(path) or (not path.suffix and self._dicom_head(path)):
                found.append(path)
        return found

    @staticmethod
    def _dicom_head(path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                return is_dicom(path, f.read(DICOM_MAGIC_END))
        except OSError:
            return False

    def poll(self) -> list[str]:
        """One pass over the folder; returns the study ids recorded."""
        recorded = []
        for path in self.candidates():
            try:
                st = path.stat()
            except OSError:  # removed between listing and stat
                continue
            version = (st.st_size, st.st_mtime_ns)
            stable = self._seen.get(path) == version
            self._seen[path] = version
            if not stable or self._done.get(path) == version or self._stop.is_set():
                continue
            self._done[path] = version
            if self.room.has_film(sha256(path.read_bytes()), source="watch"):
                continue  # ingested before a restart
            try:
                study_id = self.ingest(path)
                recorded.append(study_id)
                log.info("watch: recorded study %s", study_id)  # file names can name patients: never in the log
            except Exception as e:  # not an image: logged once, retried only if the file changes
                if getattr(e, "status_code", 500) >= 500:  # the database or server was busy: retry next poll
                    del self._done[path]
                reason = str(getattr(e, "detail", e)).removeprefix(f"{path.name}: ")
                log.warning("watch: a file was not recorded (%s)", type(e).__name__ if path.name in reason else reason)
        return recorded
