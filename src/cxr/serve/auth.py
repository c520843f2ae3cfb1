"""Who is asking: keys, roles, the loopback rule, and the failed-key limit, for every /v1 route.

Keys: the shared `$CXR_API_KEY` (role "api-key": everything but reads and reader changes), and personal keys from
`cxr readers add` (role "reader": films, studies, reads; role "admin": also readers and the access log), sent in
X-API-Key or X-Reader-Key. Once any key exists, every /v1 route needs one; with none, only a service on loopback
answers without one (or one started with --insecure-no-auth, which says so on the page).

The check is ASGI middleware, before FastAPI reads a body: an upload without a key is refused without being
spooled. Routes read the result (`request.state.principal`) through the dependencies below, which also put the
key headers in the OpenAPI schema.
"""

from __future__ import annotations

import copy
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import APIKeyHeader
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cxr.readingroom import ReadingRoom
from cxr.readingroom.access_log import Actor
from cxr.readingroom.keys import ROLES
from cxr.readingroom.readers import BAD_KEY
from cxr.serve.limits import FailedKeyLimiter
from cxr.serve.responses import KEY_EXTENSION

API_KEY_ENV = "CXR_API_KEY"
API_KEY_HEADER = "X-API-Key"
READER_KEY_HEADER = "X-Reader-Key"
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
HOW_TO_ENABLE = "set $CXR_API_KEY, or add a reader with `cxr readers add NAME --db RUN`"
INSECURE_WARNING = (
    "this service runs without authentication (--insecure-no-auth) and listens beyond this machine: "
    "anyone who can reach it can see every stored film and read; " + HOW_TO_ENABLE
)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    name: str  # a reader's or admin's name, "api key", "anonymous"
    role: str  # reader | admin | api-key | anonymous
    client: str | None  # the client's address
    key: str | None = field(default=None, repr=False)  # a personal key (reads are recorded with it)

    @property
    def person(self) -> bool:
        return self.role in ROLES

    def actor(self) -> Actor:
        return Actor(self.name, self.role, self.client)


class Auth:
    """The service's key rules; `resolve` answers who a request is, or raises the 401/429 it gets."""

    def __init__(
        self,
        room: ReadingRoom,
        api_key: str | None,
        *,
        exposed: bool = False,
        insecure_no_auth: bool = False,
        limiter: FailedKeyLimiter | None = None,
    ):
        self.room, self.api_key = room, api_key
        self.exposed, self.insecure_no_auth = exposed, insecure_no_auth
        self.limiter = limiter or FailedKeyLimiter()

    def required(self) -> bool:
        """Whether a request without a key is refused: a key exists, or the service listens beyond loopback."""
        if self.api_key is not None or (self.exposed and not self.insecure_no_auth):
            return True
        return self.room.has_active_keys()

    def warning(self) -> str | None:
        """The line the page shows while anyone on the network may read the films."""
        return INSECURE_WARNING if self.exposed and self.insecure_no_auth and not self.required() else None

    def resolve(self, api_key: str | None, reader_key: str | None, client: str | None, proxied: bool) -> Principal:
        given = reader_key or api_key
        if given:
            wait = self.limiter.retry_after(client)
            if wait is not None:
                raise HTTPException(
                    429, f"too many wrong keys from {client}: retry in {wait} s", {"Retry-After": str(wait)}
                )
            shared = self.api_key is not None and secrets.compare_digest(given.encode(), self.api_key.encode())
            if shared and not reader_key:
                return Principal("api key", "api-key", client)
            person = self.room.authenticate(given)
            if person is None:
                self.limiter.failed(client)
                log.warning("a wrong key from %s", client)
                raise HTTPException(
                    401, f"unknown or revoked key: send $CXR_API_KEY or your reader key in the {API_KEY_HEADER} header"
                )
            return Principal(person.name, person.role, client, key=given)
        if self.required():
            raise HTTPException(
                401,
                f"missing API key: this service needs a key in the {API_KEY_HEADER} header "
                f"($CXR_API_KEY, or a reader key from `cxr readers add NAME`)",
            )
        if proxied and not self.insecure_no_auth:
            raise HTTPException(
                401,
                "this request came through a proxy and the service has no key, so it would be "
                f"open to the proxy's whole network: {HOW_TO_ENABLE}",
            )
        return Principal("anonymous", "anonymous", client)


class AuthMiddleware:
    """Resolve the principal of every /v1 request before its body is read; answer 401/429/503 right here."""

    def __init__(self, app: ASGIApp, auth: Auth):
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        client = scope["client"][0] if scope.get("client") else None
        proxied = any(h in headers for h in PROXY_HEADERS)
        try:
            principal = await run_in_threadpool(
                self.auth.resolve, headers.get(API_KEY_HEADER), headers.get(READER_KEY_HEADER), client, proxied
            )
        except HTTPException as e:
            return await JSONResponse({"detail": e.detail}, e.status_code, e.headers)(scope, receive, send)
        except (SQLAlchemyError, OSError) as e:
            log.error("reading room: cannot check a key (%s)", type(e).__name__)
            body = {"detail": "the reading room cannot check keys now; retry"}
            return await JSONResponse(body, 503, {"Retry-After": "1"})(scope, receive, send)
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


_any_key = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="APIKey",
    auto_error=False,
    description="$CXR_API_KEY, or a reader's or admin's own key",
)
_reader_key = APIKeyHeader(
    name=READER_KEY_HEADER,
    scheme_name="ReaderKey",
    auto_error=False,
    description="a reader's or admin's own key (`cxr readers add NAME` prints it)",
)


def principal(request: Request, _a: str | None = Depends(_any_key), _r: str | None = Depends(_reader_key)) -> Principal:
    """Who is asking (the middleware decided); declares both key headers in the schema."""
    found = request.scope.get("state", {}).get("principal")
    if found is None:  # a route outside /v1: never the case for a route that uses this
        raise HTTPException(401, BAD_KEY)
    return found


def person(who: Principal = Depends(principal)) -> Principal:
    """A reader or admin: the shared API key and no key at all are nobody's."""
    if not who.person:
        raise HTTPException(401, BAD_KEY)
    return who


def admin(who: Principal = Depends(person)) -> Principal:
    if who.role != "admin":
        raise HTTPException(
            403, f"{who.name} is a {who.role}: only an admin key may do this (`cxr readers add NAME --role admin`)"
        )
    return who


def install_openapi(app: FastAPI, auth: Auth) -> None:
    """The schema says what a request needs now: while no key is needed, "any key" routes declare no security."""
    build: Callable[[], dict[str, Any]] = app.openapi
    variants: dict[bool, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        required = auth.required()
        if required not in variants:
            schema = copy.deepcopy(build())
            if not required:
                for item in schema.get("paths", {}).values():
                    for operation in item.values():
                        if isinstance(operation, dict) and operation.get(KEY_EXTENSION) == "any":
                            operation.pop("security", None)
            variants[required] = schema
        return variants[required]

    app.openapi = openapi  # type: ignore[method-assign]
