"""The reading room over HTTP: every /v1/predict recorded, the worklist (page and JSON), studies, reads and
disagreements, and the folder watcher. The storage itself is `cxr.readingroom`; this module only adapts it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from cxr.readingroom import ReadingRoom
from cxr.readingroom.queries import ORDERS, StudyFilter
from cxr.readingroom.service import BadReaderKey, BadRead, ModelFacts, UnknownFilm
from cxr.readingroom.watch import FolderWatcher

READER_KEY_HEADER = "X-Reader-Key"
MAX_PAGE = 200
log = logging.getLogger(__name__)


class ReadIn(BaseModel):
    label: str = Field(description='one of the model\'s classes, or "indeterminate"')
    note: str | None = Field(None, description="free text, at most 2000 characters")


def _http(e: Exception) -> HTTPException:
    status = {UnknownFilm: 404, BadReaderKey: 401, BadRead: 422}.get(type(e), 503)
    detail = str(e) if status != 503 else f"the reading room cannot store records now ({type(e).__name__}); retry"
    return HTTPException(status, detail)


def _call(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Run a reading-room call; its known failures become 401/404/422, a database or disk failure 503."""
    try:
        return fn(*args, **kwargs)
    except (UnknownFilm, BadReaderKey, BadRead, SQLAlchemyError, OSError) as e:
        if not isinstance(e, (UnknownFilm, BadReaderKey, BadRead)):
            log.error("reading room: %s", e)
        raise _http(e) from None


class ReadingService:
    """What create_app holds: the room, the recording predictor and the watcher's lifecycle."""

    def __init__(self, room: ReadingRoom, model: ModelFacts, predict_one: Callable[[UploadFile], BaseModel],
                 watch: Path | None = None, poll_seconds: float = 1.0):  # fmt: skip
        self.room, self.model, self._predict_one = room, model, predict_one
        self.watcher = FolderWatcher(watch, self._ingest, room, poll_seconds) if watch is not None else None

    def predict(self, upload: UploadFile, source: str = "upload") -> BaseModel:
        """Predict, then record; the answer carries the study id only once the record is committed."""
        prediction = self._predict_one(upload)
        upload.file.seek(0)
        data = upload.file.read()
        probs = [prediction.probabilities[c] for c in self.model.classes]
        film = _call(self.room.record, data, upload.filename, self.model, probs, prediction.predicted, source=source,
                     ood_score=getattr(prediction, "ood_score", None), seconds=getattr(prediction, "seconds", None))
        return prediction.model_copy(update={"study_id": film["id"]})

    def _ingest(self, path: Path) -> str:
        with open(path, "rb") as f:
            prediction = self.predict(UploadFile(f, filename=path.name), source="watch")
        return prediction.study_id

    def start(self) -> None:
        if self.watcher is not None:
            self.watcher.start()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.room.close()


def add_reading_routes(app: FastAPI, service: ReadingService, require_key: Callable) -> None:
    room = service.room
    router = APIRouter(tags=["reading room"], dependencies=[Depends(require_key)])

    @app.get("/worklist", response_class=HTMLResponse, include_in_schema=False)
    def worklist_page() -> str:
        return resources.files("cxr.serve").joinpath("static/worklist.html").read_text(encoding="utf-8")

    @router.get("/v1/studies")
    def studies(
        unread: bool = Query(False, description="only films no reader has read"),
        flagged: bool = Query(False, description="only films the model calls positive (not the normal class)"),
        disagreement: bool = Query(False, description="only films where a reader's current read differs"),
        received_from: datetime | None = Query(None, description="received at or after (ISO 8601; no zone = UTC)"),
        received_to: datetime | None = Query(None, description="received before (ISO 8601; no zone = UTC)"),
        order: str = Query("triage", pattern=f"^({'|'.join(ORDERS)})$",
                           description="triage: most likely positive first; newest: latest first"),
        limit: int = Query(50, ge=1, le=MAX_PAGE, description="films per page"),
        offset: int = Query(0, ge=0, description="films to skip (paging)"),
    ) -> dict[str, Any]:
        """The worklist: received films with the model's call and the readers' current reads."""
        f = StudyFilter(unread, flagged, disagreement, received_from, received_to)
        return _call(room.studies, f, order, limit, offset)

    @router.get("/v1/disagreements")
    def disagreements(limit: int = Query(50, ge=1, le=MAX_PAGE), offset: int = Query(0, ge=0)) -> dict[str, Any]:
        """Films where a reader and the model differ, newest first: the hard cases to retrain on."""
        return _call(room.studies, StudyFilter(disagreement=True), "newest", limit, offset)

    @router.get("/v1/studies/{study_id}")
    def study(study_id: str) -> dict[str, Any]:
        """One film, with every read ever recorded for it (`history`) and the current one per reader (`reads`)."""
        return _call(room.study, study_id)

    @router.get("/v1/studies/{study_id}/image", response_class=FileResponse)
    def study_image(study_id: str) -> FileResponse:
        """The film as received (from the content-addressed store)."""
        return FileResponse(_call(room.image_path, study_id), media_type="application/octet-stream")

    @router.post("/v1/studies/{study_id}/reads", status_code=201)
    def add_read(
        study_id: str,
        read: ReadIn,
        reader_key: str | None = Header(None, alias=READER_KEY_HEADER, description="`cxr readers add NAME` prints it"),
    ) -> dict[str, Any]:
        """Record a reader's own read; a changed read is a new version, the earlier one stays."""
        return _call(room.add_read, study_id, reader_key, read.label, read.note)

    @router.get("/v1/reader")
    def whoami(reader_key: str | None = Header(None, alias=READER_KEY_HEADER)) -> dict[str, str]:
        """The reader a key belongs to (the page checks a key with this before showing the read form)."""
        return {"name": _call(room.reader_name, reader_key)}

    app.include_router(router)
