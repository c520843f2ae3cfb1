"""The reading room over HTTP: every /v1/predict recorded, the worklist (page and JSON), studies, reads and
disagreements, and the folder watcher. The storage itself is `cxr.readingroom`; this module only adapts it.
Every film view and read is in the access log, with who (serve/auth.py) and from where.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, BeforeValidator, Field, create_model
from sqlalchemy.exc import SQLAlchemyError

from cxr.errors import CxrError
from cxr.readingroom import ReadingRoom
from cxr.readingroom.access_log import WATCHER, Actor
from cxr.readingroom.queries import ORDERS, StudyFilter
from cxr.readingroom.schema import INDETERMINATE
from cxr.readingroom.service import (
    MAX_NOTE,
    BadRead,
    BadReaderKey,
    ModelFacts,
    ReaderExists,
    UnknownFilm,
    UnknownReader,
)
from cxr.readingroom.watch import FolderWatcher
from cxr.serve.auth import Principal, person, principal
from cxr.serve.responses import documented

MAX_PAGE = 200
MAX_OFFSET = 10**9  # beyond any worklist; also keeps the number within what every database takes
FILM_ID = "^[0-9a-f]{32}$"  # a study id as the service makes them (uuid4 hex)
ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$")
KNOWN = {UnknownFilm: 404, UnknownReader: 404, BadReaderKey: 401, BadRead: 422, ReaderExists: 409, CxrError: 422}
log = logging.getLogger(__name__)


def _iso_8601(value: Any) -> Any:
    """A date and time as the schema says (`format: date-time`): not a number of seconds, not a date alone."""
    if isinstance(value, str) and not ISO_8601.match(value):
        raise ValueError("an ISO 8601 date and time, such as 2027-01-14T09:30:00Z")
    return value


When = Annotated[datetime, BeforeValidator(_iso_8601)]


def study_links(study_id: str) -> dict[str, Any]:
    """OpenAPI links from an answer that names a study (`study_id`: a runtime expression) to what takes its id."""
    return {
        name: {"operationId": operation, "parameters": {"study_id": study_id}}
        for name, operation in (("study", "get_study"), ("image", "get_study_image"), ("read", "add_read"))
    }


def read_model(classes: list[str]) -> type[BaseModel]:
    """The body of POST /v1/studies/{id}/reads, its labels this model's classes (the schema lists them)."""
    label = Literal[tuple([*classes, INDETERMINATE])]  # type: ignore[valid-type]
    return create_model(
        "ReadIn",
        label=(label, Field(description='one of the model\'s classes, or "indeterminate"')),
        note=(str | None, Field(None, max_length=MAX_NOTE, pattern=r"^[^\x00]*$", description="free text")),
    )


def call(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Run a reading-room call; its known failures become 401/404/409/422, a database or disk failure 503."""
    try:
        return fn(*args, **kwargs)
    except (CxrError, SQLAlchemyError, OSError) as e:
        status = next((code for kind, code in KNOWN.items() if isinstance(e, kind)), 503)
        if status == 503:
            log.error("reading room: %s", type(e).__name__)  # the message may name a file: not in the log
            raise HTTPException(503, f"the reading room cannot store records now ({type(e).__name__}); retry") from None
        raise HTTPException(status, str(e)) from None


class ReadingService:
    """What create_app holds: the room, the recording predictor and the watcher's lifecycle."""

    def __init__(
        self,
        room: ReadingRoom,
        model: ModelFacts,
        predict_one: Callable[[UploadFile], BaseModel],
        watch: Path | None = None,
        poll_seconds: float = 1.0,
    ):
        self.room, self.model, self._predict_one = room, model, predict_one
        self.after_read: Callable[[str, dict[str, Any]], None] | None = None  # the DICOM gateway sends reads back
        self.watcher = FolderWatcher(watch, self._ingest, room, poll_seconds) if watch is not None else None

    def predict(self, upload: UploadFile, source: str = "upload", actor: Actor = WATCHER) -> BaseModel:
        """Predict, then record (and log `actor` sending it); the answer carries the study id only once the record is
        committed."""
        prediction = self._predict_one(upload)
        upload.file.seek(0)
        data = upload.file.read()
        probs = [prediction.probabilities[c] for c in self.model.classes]
        film = call(
            self.room.record,
            data,
            upload.filename,
            self.model,
            probs,
            prediction.predicted,
            source=source,
            ood_score=getattr(prediction, "ood_score", None),
            seconds=getattr(prediction, "seconds", None),
            actor=actor,
            in_distribution=getattr(prediction, "in_distribution", None),
            guard_reason=getattr(prediction, "_guard_reason", None),
            input_stats=getattr(prediction, "_input_stats", None),
        )
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


def _study_id() -> Any:
    return PathParam(pattern=FILM_ID, description="a study id (GET /v1/studies lists them)")


def add_reading_routes(app: FastAPI, service: ReadingService) -> None:
    room = service.room
    router = APIRouter(tags=["reading room"])
    ReadIn = read_model(list(service.model.classes))

    @app.get("/worklist", response_class=HTMLResponse, include_in_schema=False)
    def worklist_page() -> str:
        return resources.files("cxr.serve").joinpath("static/worklist.html").read_text(encoding="utf-8")

    listing = documented()
    listing["responses"][200] = {"description": "a page of studies", "links": study_links("$response.body#/items/0/id")}

    @router.get("/v1/studies", **listing)
    def studies(
        who: Principal = Depends(principal),
        unread: bool = Query(False, description="only films no reader has read"),
        flagged: bool = Query(False, description="only films the model calls positive (not the normal class)"),
        disagreement: bool = Query(False, description="only films where a reader's current read differs"),
        check_input: bool | None = Query(
            None,
            description="true: only films the input guard flagged as unlike the training films (check the input); "
            "false: only the others (the triage list); unset: both, flagged films after every other in triage order",
        ),
        received_from: When | None = Query(None, description="received at or after (ISO 8601; no zone = UTC)"),
        received_to: When | None = Query(None, description="received before (ISO 8601; no zone = UTC)"),
        order: str = Query(
            "triage",
            pattern=f"^({'|'.join(ORDERS)})$",
            description="triage: most likely positive first; newest: latest first",
        ),
        limit: int = Query(50, ge=1, le=MAX_PAGE, description="films per page"),
        offset: int = Query(0, ge=0, le=MAX_OFFSET, description="films to skip (paging)"),
    ) -> dict[str, Any]:
        """The worklist: received films with the model's call and the readers' current reads."""
        f = StudyFilter(unread, flagged, disagreement, received_from, received_to, check_input)
        return call(room.studies, f, order, limit, offset)

    @router.get("/v1/disagreements", **documented())
    def disagreements(
        who: Principal = Depends(principal),
        limit: int = Query(50, ge=1, le=MAX_PAGE),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        """Films where a reader and the model differ, newest first: the hard cases to retrain on."""
        return call(room.studies, StudyFilter(disagreement=True), "newest", limit, offset)

    @router.get("/v1/studies/{study_id}", operation_id="get_study", **documented(404))
    def study(study_id: str = _study_id(), who: Principal = Depends(principal)) -> dict[str, Any]:
        """One film, with every read ever recorded for it (`history`) and the current one per reader (`reads`)."""
        return call(room.study, study_id, who.actor())

    image = documented(404)
    image["responses"][200] = {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the film's bytes as received (PNG, JPEG, DICOM, ...)",
    }

    @router.get("/v1/studies/{study_id}/image", operation_id="get_study_image", response_class=FileResponse, **image)
    def study_image(study_id: str = _study_id(), who: Principal = Depends(principal)) -> FileResponse:
        """The film as received (from the content-addressed store)."""
        return FileResponse(call(room.image_path, study_id, who.actor()), media_type="application/octet-stream")

    def add_read(read: BaseModel, study_id: str = _study_id(), who: Principal = Depends(person)) -> dict[str, Any]:
        """Record your own read (your key in X-Reader-Key or X-API-Key); a changed read is a new version, the
        earlier one stays."""
        recorded = call(room.add_read, study_id, who.key, read.label, read.note, who.client)
        if service.after_read is not None:
            try:
                service.after_read(study_id, recorded)
            except Exception as e:  # the read is recorded; sending it to the PACS is best effort, said in the log
                log.warning("the read of study %s was not queued for the PACS (%s)", study_id, type(e).__name__)
        return recorded

    add_read.__annotations__["read"] = ReadIn  # this model's classes: made here, so not a name FastAPI could look up
    router.post(
        "/v1/studies/{study_id}/reads",
        status_code=201,
        operation_id="add_read",
        **documented(400, 404, 413, key="personal"),
    )(add_read)

    @router.get("/v1/reader", **documented(key="personal"))
    def whoami(who: Principal = Depends(person)) -> dict[str, str]:
        """The reader a key belongs to, and their role (the page checks a key with this before the read form)."""
        return {"name": who.name, "role": who.role}

    app.include_router(router)
