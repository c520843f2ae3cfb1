"""Admin routes: add, list and revoke readers, and read the access log (an admin key; `cxr readers` and
`cxr audit-log` do the same on the machine)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, Field

from cxr.readingroom import ReadingRoom
from cxr.readingroom.access_log import ACTIONS, LogFilter
from cxr.readingroom.keys import NAME_PATTERN
from cxr.serve.auth import Principal, admin
from cxr.serve.reading_routes import FILM_ID, MAX_OFFSET, MAX_PAGE, When, call
from cxr.serve.responses import documented


class ReaderIn(BaseModel):
    name: str = Field(pattern=NAME_PATTERN, description="the reader's name, as it will appear on every read")
    role: Literal["reader", "admin"] = Field("reader", description="admin: may also add and revoke readers")


class ReaderOut(BaseModel):
    name: str
    role: str
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    reads: int


class NewReader(BaseModel):
    name: str
    role: str
    key: str = Field(description="shown once: only a salted hash of it is kept")


class Revoked(BaseModel):
    name: str
    role: str
    revoked_at: str | None


def add_admin_routes(app: FastAPI, room: ReadingRoom) -> None:
    router = APIRouter(tags=["admin"])

    @router.get("/v1/readers", response_model=list[ReaderOut], **documented(key="admin"))
    def readers(who: Principal = Depends(admin)) -> list[dict[str, Any]]:
        """Readers and admins: names, roles, when added, last used and revoked, reads recorded (never keys)."""
        return call(room.readers)

    @router.post("/v1/readers", status_code=201, response_model=NewReader, **documented(400, 409, 413, key="admin"))
    def add_reader(body: ReaderIn, who: Principal = Depends(admin)) -> dict[str, str]:
        """Add a reader (or an admin); the answer carries their key, once."""
        key = call(room.add_reader, body.name, body.role, who.actor())
        return {"name": body.name, "role": body.role, "key": key}

    @router.delete("/v1/readers/{name}", response_model=Revoked, **documented(404, 409, key="admin"))
    def revoke_reader(name: str = Path(pattern=NAME_PATTERN), who: Principal = Depends(admin)) -> dict[str, Any]:
        """Revoke a reader's key: it stops working at once; their reads stay, under their name. Not your own key
        (409): another admin, or `cxr readers revoke` on the machine, can."""
        if name == who.name:
            raise HTTPException(
                409,
                "you cannot revoke your own key over the API: ask another admin, or run "
                "`cxr readers revoke NAME` on the machine",
            )
        return call(room.revoke_reader, name, who.actor())

    @router.get("/v1/access-log", **documented(key="admin"))
    def access_log(
        who: Principal = Depends(admin),
        actor: str | None = Query(None, max_length=100, pattern=r"^[^\x00]*$", description="only this actor"),
        action: Literal[ACTIONS] | None = Query(None, description="only this action"),  # type: ignore[valid-type]
        film_id: str | None = Query(None, pattern=FILM_ID, description="only this study"),
        since: When | None = Query(None, description="at or after (ISO 8601; no zone = UTC)"),
        until: When | None = Query(None, description="before (ISO 8601; no zone = UTC)"),
        limit: int = Query(100, ge=1, le=MAX_PAGE),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        """Who saw or did what to which film, when, from where; newest first."""
        return call(room.access_log, LogFilter(actor, action, film_id, since, until), limit, offset)

    app.include_router(router)
