"""orjson encoding of every record the stream layer writes.

One function for all payloads so that output bytes are identical on every worker:
``OPT_SORT_KEYS`` fixes key order independently of dict construction order, which is what
makes the prediction payloads byte-identical across worker counts and restarts.
"""

from __future__ import annotations

from typing import Any

import orjson

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys)."""
    return orjson.dumps(value, option=_OPTS)


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON bytes (raises ``orjson.JSONDecodeError``, a ``ValueError``)."""
    return orjson.loads(raw)


def register_faust_codec() -> None:
    """Register ``"orjson"`` as a Faust codec (used for the session table's values)."""
    from faust.serializers import codecs as faust_codecs

    class _OrjsonCodec(faust_codecs.Codec):
        def _dumps(self, obj: Any) -> bytes:
            return dumps(obj)

        def _loads(self, s: bytes) -> Any:
            return loads(s)

    faust_codecs.register("orjson", _OrjsonCodec())
