"""KATO's effective HTTP error bodies (spec §8.1) and the mapping from rejected records.

KATO's custom error envelope never takes effect, so clients see FastAPI defaults
(``{"detail": ...}``, FastAPI's validation list for 422), the session middleware's
``{"error": {...}}`` for unknown sessions, and a plain-text 500 for anything unexpected.
The gateway reproduces exactly those, and answers input that cannot go through the stream
(too large, not encodable) with the same shapes instead of a 500.
"""

from __future__ import annotations

import math
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


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``null``: Python's JSON parser accepts ``NaN`` and
    ``Infinity`` in a request, but a response holding them cannot be encoded (a 500)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def validation_error(errors: list[dict[str, Any]]) -> JSONResponse:
    """FastAPI's 422 body: ``{"detail": [{type, loc, msg, input, ctx?}, ...]}``."""
    return JSONResponse(status_code=422, content={"detail": json_safe(errors)})


def id_too_long(where: str, name: str, value: str, limit: int) -> JSONResponse:
    """The 422 pydantic gives a ``max_length`` string field, for an id checked by hand."""
    return validation_error(
        [
            {
                "type": "string_too_long",
                "loc": [where, name],
                "msg": f"String should have at most {limit} characters",
                "input": value,
                "ctx": {"max_length": limit},
            }
        ]
    )


def too_large(message: str) -> JSONResponse:
    """413: a request, or its command's effects or answer, larger than the stream carries."""
    return detail(413, message)


def internal_error() -> PlainTextResponse:
    """Starlette's plain-text 500, which is what KATO clients get for unexpected errors."""
    return PlainTextResponse("Internal Server Error", status_code=500)


#: Rejections for size: the command (or what it would write or answer) does not fit the broker.
TOO_LARGE = frozenset({"OVERSIZED", "STATE_TOO_LARGE", "PATTERN_TOO_LARGE", "OUTPUT_TOO_LARGE"})
#: The worker's envelope errors (stream/envelope.py): a malformed command, answered 400.
ENVELOPE_INVALID = frozenset(
    {
        "EMPTY",
        "MALFORMED_JSON",
        "NOT_AN_OBJECT",
        "MISSING_FIELD",
        "WRONG_TYPE",
        "UNKNOWN_FIELD",
        "UNKNOWN_OP",
        "KEY_MISMATCH",
        "NODE_MISMATCH",
    }
)


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
    if code == "COMMAND_INVALID" or code in ENVELOPE_INVALID:
        return detail(400, message)
    if code in TOO_LARGE:
        return too_large(message or "The command is too large for the stream")
    if code == "DUPLICATE":
        return detail(409, message)
    if code == "UNRAVEL_FAILED":  # a pattern along the chain is unknown (docs/hierarchy.md)
        return detail(404, message)
    return internal_error()
