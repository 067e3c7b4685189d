"""A JSON response for the gateway's bulky answers (predictions, cognition data).

Starlette's ``JSONResponse`` encodes with the standard library's ``json``: about 150 KB of
predictions per answer at KATO's defaults, the largest part of the gateway's own time on
``GET /sessions/{id}/predictions``.  orjson encodes the same values, compact and UTF-8 like
Starlette's (``ensure_ascii=False``, no spaces); floats print in their shortest round-trip
form either way, so a client parses the same numbers.  Values orjson refuses (an integer
beyond 64 bits) fall back to Starlette's encoding.  No NaN reaches here: the worker's
records are orjson-encoded, which writes NaN as null.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

__all__ = ["BulkJSONResponse"]

_OPTS = orjson.OPT_NON_STR_KEYS


class BulkJSONResponse(JSONResponse):
    """``JSONResponse`` rendered by orjson (falls back to Starlette's for what it refuses)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=_OPTS)
        except TypeError:
            rendered: bytes = super().render(content)
            return rendered
