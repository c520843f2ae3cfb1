"""The error answers every route documents in the OpenAPI schema, so a client (or a fuzzer) can rely on them: each
is JSON `{"detail": ...}`, a sentence, or for request validation (422) FastAPI's list of `{loc, msg, type}`."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

# x-cxr-key, an OpenAPI extension on each /v1 operation: which key it takes. "any": any key, and none while the
# service needs none (loopback, no key set); "personal": a reader's or admin's own key; "admin": an admin's key.
KEY_EXTENSION = "x-cxr-key"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

DESCRIPTIONS = {
    400: "the body cannot be parsed, or the image's dimensions are out of range (a decompression bomb)",
    401: "no key, or an unknown or revoked one (X-API-Key or X-Reader-Key)",
    403: "the key is valid, but its role may not do this (admin only)",
    404: "no such study, image or reader",
    409: "a reader with that name exists already, or (revoking) your own key",
    413: "the request body is over the upload limit (cxr serve --max-upload-mb)",
    415: "the upload is not a readable image",
    422: "a parameter or body the schema refuses, or a value the model does not know",
    429: "too many wrong keys from this address: wait Retry-After seconds",
    501: "Grad-CAM is not installed",
    503: "busy (too many requests waiting) or the reading room cannot be reached: retry",
}


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]] = Field(description="what went wrong: a sentence, or a list of problems")


def documented(*codes: int, key: str = "any") -> dict[str, Any]:
    """Route keyword arguments: the error answers (`codes` and those every /v1 route can give) and its key kind."""
    always = {401, 422, 429, 503} | ({403} if key == "admin" else set())
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorOut, "description": DESCRIPTIONS[code]} for code in sorted(always | set(codes))
    }
    for code in (429, 503):
        responses[code]["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
    return {"responses": responses, "openapi_extra": {KEY_EXTENSION: key}}


def install_allow_header(app: FastAPI) -> None:
    """A 405's Allow header lists every method the schema documents for the path (Starlette names only the first
    route's: GET /v1/readers and POST /v1/readers are two routes)."""

    def methods(path: str) -> set[str]:
        found = set()
        for template, item in app.openapi().get("paths", {}).items():
            if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), path):
                found |= {m.upper() for m in item if m in HTTP_METHODS}
        return found

    async def method_not_allowed(request: Request, exc: HTTPException):
        if exc.status_code == 405 and (allowed := methods(request.url.path)):
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        return await http_exception_handler(request, exc)

    app.add_exception_handler(HTTPException, method_not_allowed)
