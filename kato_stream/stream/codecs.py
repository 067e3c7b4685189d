"""orjson encoding of every record the stream layer writes.

One function for all payloads so that output bytes are identical on every worker:
``OPT_SORT_KEYS`` fixes key order independently of dict construction order, which is what
makes the prediction payloads byte-identical across worker counts and restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from kato_stream.core.predictor.encoded import EncodedPredictions

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _encoded(value: Any) -> orjson.Fragment:
    """orjson's ``default``: predictions the kernel already wrote are spliced in as they are
    (the same bytes this module writes for their dicts: tests/core/test_encoded.py)."""
    if isinstance(value, EncodedPredictions):
        return orjson.Fragment(value.json)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys)."""
    return orjson.dumps(value, default=_encoded, option=_OPTS)


def dumps_sharing(record: Any, lists: Mapping[str, list[Any]]) -> tuple[bytes, dict[str, bytes]]:
    """``dumps(record)`` and ``dumps`` of each of ``lists``, encoding each list only once.

    An output record carries the same predictions and future potentials that the session
    keeps (session_lists.py); at the default 100 predictions that is about 200 KB of JSON per
    command, written twice.  Where ``record[name]`` holds the same objects as ``lists[name]``,
    the list's bytes are spliced into the record (``orjson.Fragment``): the same bytes as
    :func:`dumps` would write, since a nested value is encoded with the same options.
    """
    encoded = {
        name: items.json if isinstance(items, EncodedPredictions) else dumps(items)
        for name, items in lists.items()
    }
    shared: dict[str, orjson.Fragment] = {}
    if isinstance(record, dict):
        for name, raw in encoded.items():
            mine, items = record.get(name), lists[name]
            if (
                mine is items
                and isinstance(items, EncodedPredictions)
                or (
                    isinstance(mine, list)
                    and len(mine) == len(items)
                    and all(a is b for a, b in zip(mine, items, strict=True))
                )
            ):
                shared[name] = orjson.Fragment(raw)
    return dumps({**record, **shared} if shared else record), encoded


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
