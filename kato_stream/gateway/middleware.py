"""KATO's session middleware: unknown sessions answer 404 before any route runs (spec §8.1).

For every ``/sessions/{id}/...`` path and ``DELETE /sessions/{id}`` (not ``GET /sessions/{id}``
nor ``GET /sessions/{id}/exists``) the session is looked up, which also slides its expiry.
The record is handed to the route in ``request.state.session``.  Successful session-scoped
responses carry ``X-Session-ID``; every response carries ``X-Trace-ID``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

from kato_stream.gateway.errors import internal_error, session_not_found
from kato_stream.gateway.sessions import SessionRegistry

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
        trace_id = request.headers.get("x-trace-id") or uuid.uuid4().hex
        session_id = None
        m = _SESSION_PATH.match(request.url.path)
        if m is not None:
            sid, rest = m.group(1), m.group(2) or ""
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
                    response: Response = session_not_found(sid)
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
