"""What keeps a burst of uploads from taking the service down: a request-body cap and a bounded inference pool; and
what keeps a client from guessing keys: a cap on wrong keys per client address."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")
MULTIPART_SLACK = 64 * 1024  # multipart boundaries and part headers around the file itself


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, before the multipart parser spools it.

    Hand-written (about 30 lines) because Starlette only caps non-file form fields. A declared Content-Length over
    the cap is refused without reading a byte; a chunked body is counted as it arrives and cut off at the cap.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"upload too large: the limit is {self.max_bytes / 2**20:.3g} MB (cxr serve --max-upload-mb)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes + MULTIPART_SLACK:
            body = json.dumps({"detail": self._message()}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes + MULTIPART_SLACK:
                    # an HTTPException passes through FastAPI's body parsing untouched and becomes the response
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counting_receive, send)


class InferencePool:
    """A few worker threads for decoding and inference, and a cap on how many requests may wait for them.

    Decoding and the model run outside the event loop (the server stays responsive), at most `workers` at a time
    (memory for decoded images is bounded), and when `max_pending` requests are already queued a new one gets
    503 at once instead of piling up.
    """

    def __init__(self, workers: int = 1, max_pending: int = 64):
        if workers < 1 or max_pending < workers:
            raise ValueError("need workers >= 1 and max_pending >= workers")
        self.workers = workers
        self.max_pending = max_pending
        self.pending = 0  # touched only on the event loop thread: no lock needed
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxr-infer")

    async def run(self, fn: Callable[..., T], *args) -> T:
        if self.pending >= self.max_pending:
            raise HTTPException(503, "server busy: too many requests waiting; retry shortly", {"Retry-After": "1"})
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class FailedKeyLimiter:
    """Per client address: after `max_failures` wrong keys within `window` seconds, every request that carries a key
    gets 429 (with Retry-After) until the oldest of those failures is `window` seconds old; the key is not checked.

    In memory, per service process; at most `max_clients` addresses are tracked (the least recently failing go
    first). Behind a reverse proxy, the address is the one uvicorn takes from X-Forwarded-For of a trusted proxy
    (--forwarded-allow-ips; loopback by default).
    """

    def __init__(self, max_failures: int = 10, window: float = 60.0, max_clients: int = 10_000, clock=time.monotonic):
        self.max_failures, self.window, self.max_clients, self.clock = max_failures, window, max_clients, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()  # checked from the worker threads that look keys up

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, client: str | None) -> int | None:
        """Seconds until this client may send a key again; None when it may now."""
        with self._lock:
            now = self.clock()
            times = self._recent(client or "?", now)
            if len(times) < self.max_failures:
                return None
            return max(1, math.ceil(times[-self.max_failures] + self.window - now))

    def failed(self, client: str | None) -> None:
        with self._lock:
            client = client or "?"
            times = self._recent(client, self.clock())
            times.append(self.clock())
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
