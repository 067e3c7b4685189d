"""KATO's session middleware: unknown sessions answer 404 before any route runs (spec §8.1).

For every ``/sessions/{id}/...`` path and ``DELETE /sessions/{id}`` (not ``GET /sessions/{id}``
nor ``GET /sessions/{id}/exists``) the session is looked up, which also slides its expiry.
The record is handed to the route in ``request.state.session``.  Successful session-scoped
responses carry ``X-Session-ID``; every response carries ``X-Trace-ID``.  A session id longer
than the stream's ``MAX_ID`` (no session has one) answers 422 in FastAPI's shape.

:class:`BodyLimitMiddleware` refuses a request body larger than the worker's envelope limit
with 413 ``{"detail": ...}`` before any of it reaches a route, so nothing is published.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kato_stream.gateway.errors import id_too_long, internal_error, session_not_found, too_large
from kato_stream.gateway.sessions import SessionRegistry
from kato_stream.stream.envelope import MAX_ID

_SESSION_PATH = re.compile(r"^/sessions/([^/]+)(/.*)?$")

RequestHook = Callable[[str, str, int, float], None]
StartHook = Callable[[], None]


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class SessionMiddleware(BaseHTTPMiddleware):
    """Session check + trace id + per-request metrics hook."""

    def __init__(
        self,
        app: object,
        registry: Callable[[], SessionRegistry],
        on_request: RequestHook | None = None,
        on_start: StartHook | None = None,
    ) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self._registry = registry
        self._on_request = on_request
        self._on_start = on_start

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response: Response
        trace_id = request.headers.get("x-trace-id") or uuid.uuid4().hex
        session_id = None
        m = _SESSION_PATH.match(request.url.path)
        if m is not None:
            sid, rest = m.group(1), m.group(2) or ""
            if len(sid) > MAX_ID:
                response = id_too_long("path", "session_id", sid, MAX_ID)
                response.headers["X-Trace-ID"] = trace_id
                return response
            checked = (
                request.method == "DELETE"
                if rest == ""
                else not (request.method == "GET" and rest == "/exists")
            )
            if checked:
                try:
                    record = await self._registry().get(sid)
                except Exception:
                    return internal_error()
                if record is None:
                    response = session_not_found(sid)
                    response.headers["X-Trace-ID"] = trace_id
                    return response
                request.state.session = record
                session_id = sid
        if self._on_start is not None:
            self._on_start()
        try:
            response = await call_next(request)
        except BaseException:
            if self._on_request is not None:
                elapsed = time.perf_counter() - started
                self._on_request(request.method, _route_template(request), 500, elapsed)
            raise
        response.headers["X-Trace-ID"] = trace_id
        if session_id is not None and response.status_code < 400:
            response.headers["X-Session-ID"] = session_id
        if self._on_request is not None:
            self._on_request(
                request.method,
                _route_template(request),
                response.status_code,
                time.perf_counter() - started,
            )
        return response


def _body_message(size: int, limit: int) -> str:
    return (
        f"Request body is {size} bytes, the limit is {limit} bytes (KATO_STREAM_MAX_MESSAGE_BYTES)"
    )


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body without a (truthful) length passes the limit;
    FastAPI re-raises it from body parsing, so it answers 413 ``{"detail": ...}``."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"Request body is over the limit of {limit} bytes (KATO_STREAM_MAX_MESSAGE_BYTES)"
        )


class BodyLimitMiddleware:
    """413 for a request body over ``limit()`` bytes: at once when ``Content-Length`` says
    so (nothing is read), else as soon as the bytes received pass it."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit()
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await too_large(_body_message(declared, limit))(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
