"""KATO's effective HTTP error bodies (spec §8.1) and the mapping from rejected records.

KATO's custom error envelope never takes effect, so clients see FastAPI defaults
(``{"detail": ...}``), the session middleware's ``{"error": {...}}`` for unknown sessions,
and a plain-text 500 for anything unexpected.  The gateway reproduces exactly those.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response


def session_not_found(session_id: str) -> JSONResponse:
    """The session middleware's 404 body."""
    return JSONResponse(
        status_code=404,
        content={
            "error": {
                "code": "SESSION_NOT_FOUND",
                "message": f"Session {session_id} not found or expired",
                "session_id": session_id,
            }
        },
    )


def detail(status: int, body: Any) -> JSONResponse:
    """FastAPI's ``HTTPException`` body."""
    return JSONResponse(status_code=status, content={"detail": body})


def internal_error() -> PlainTextResponse:
    """Starlette's plain-text 500, which is what KATO clients get for unexpected errors."""
    return PlainTextResponse("Internal Server Error", status_code=500)


def from_rejection(error: dict[str, Any] | None, session_id: str) -> Response:
    """The HTTP answer KATO gives for an error the engine reported on a rejected record."""
    err = error or {}
    code = str(err.get("code", ""))
    message = str(err.get("message", ""))
    details = err.get("details")
    if code == "EMPTY_STM":
        return detail(400, message or "Cannot learn from empty STM")
    if code == "CONFIG_INVALID":
        errors = details.get("validation_errors", details) if isinstance(details, dict) else {}
        return detail(
            400, {"error": "Configuration validation failed", "validation_errors": errors or {}}
        )
    if code == "OBSERVATION_INVALID":
        return detail(422, details if details is not None else message)
    if code == "SESSION_NOT_FOUND":
        return session_not_found(session_id)
    if code == "COMMAND_INVALID":
        return detail(400, message)
    return internal_error()
