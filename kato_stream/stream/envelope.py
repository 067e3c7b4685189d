"""Parse and validate raw command bytes into an :class:`Envelope`.

Everything a worker can be handed on the input topic passes through :func:`parse_envelope`,
which either returns a well-formed envelope or raises :class:`EnvelopeError` with a stable
``code``.  The agent turns every such error into a dead letter plus a rejection record, so
no input can stop a worker.  Validation here is structural (shape, types, op, size, key);
the meaning of a payload (observation rules, config rules) is the engine's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kato_stream.core.engine import OPS as ENGINE_OPS
from kato_stream.stream import codecs

#: Header of an input record a worker derived from a ``forward_to`` learn: "<from>><to>"
#: (docs/hierarchy.md); a replay skips such records, the learns it replays make them again.
FORWARDED_HEADER = "kato-forwarded"
#: Ops the stream layer answers itself: they read several nodes (the engine sees one).
STREAM_OPS = frozenset({"unravel"})
OPS: frozenset[str] = frozenset(ENGINE_OPS) | STREAM_OPS
_FIELDS = frozenset({"op", "session_id", "node_id", "msg_id", "origin", "payload"})
MAX_ORIGIN = 1024
#: Longest ``session_id``, ``node_id`` and ``msg_id`` (characters): each is copied into every
#: output record, dead letter and Redis key, so an unbounded one could make all of them too
#: large for the broker.  KATO's ids are UUIDs or short names.
MAX_ID = 1024
#: Longest record key (bytes): the key of the input is the key of its output record.
MAX_KEY = 4 * MAX_ID


class EnvelopeError(Exception):
    """A command that cannot be processed; ``code`` is stable and machine-readable.

    Codes: ``OVERSIZED``, ``EMPTY``, ``MALFORMED_JSON``, ``NOT_AN_OBJECT``, ``MISSING_FIELD``,
    ``WRONG_TYPE``, ``UNKNOWN_FIELD``, ``UNKNOWN_OP``, ``KEY_MISMATCH``, ``NODE_MISMATCH``.
    ``partial`` keeps whatever identifying fields could be read, for the rejection record.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        partial: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}
        self.partial = partial or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


@dataclass(frozen=True)
class Envelope:
    """A structurally valid command."""

    op: str
    session_id: str
    node_id: str
    msg_id: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    #: identity of the record this one re-publishes (replay): stands in for the source
    #: coordinates in the learn/clear ids of a command without msg_id
    origin: str | None = None


def _str_or_none(v: Any) -> str | None:
    """An identifying field for a rejection record: only a string short enough to copy."""
    return v if isinstance(v, str) and len(v) <= MAX_ID else None


def parse_envelope(raw: bytes | None, key: bytes | None, *, max_bytes: int) -> Envelope:
    """Validate ``raw`` (the record value) against the envelope contract (contracts §2).

    ``key`` must be the UTF-8 session id: a missing or mismatched key would put the
    session's commands on partitions other than the one its other commands use, breaking
    their order.  Ids and the key are bounded (``MAX_ID``, ``MAX_KEY``): each is copied into
    outputs that must fit the broker.  The checks run in a fixed order (sizes, JSON, the
    required ids, unknown fields, the optional fields, the op, the key), so a record breaking
    several rules always gets the same error.
    """
    doc = _document(raw, key, max_bytes)
    partial = {
        "session_id": _str_or_none(doc.get("session_id")),
        "node_id": _str_or_none(doc.get("node_id")),
        "msg_id": _str_or_none(doc.get("msg_id")),
        "op": _str_or_none(doc.get("op")),
    }
    for name in ("op", "session_id", "node_id"):
        _check_id(doc, name, partial)
    extra = sorted(set(doc) - _FIELDS)
    if extra:
        raise EnvelopeError(
            "UNKNOWN_FIELD",
            f"unknown envelope field(s): {', '.join(extra)}",
            {"fields": extra},
            partial,
        )
    msg_id, origin, payload = _optional_fields(doc, partial)
    op = doc["op"]
    if op not in OPS:
        raise EnvelopeError(
            "UNKNOWN_OP", f"unknown op {op!r}", {"op": op, "known": sorted(OPS)}, partial
        )
    _check_key(key, doc["session_id"], partial)
    return Envelope(
        op=op,
        session_id=doc["session_id"],
        node_id=doc["node_id"],
        msg_id=msg_id,
        payload=payload,
        origin=origin,
    )


def _document(raw: bytes | None, key: bytes | None, max_bytes: int) -> dict[str, Any]:
    """The record's value as a JSON object, after the size checks of the key and value."""
    if key is not None and len(key) > MAX_KEY:
        raise EnvelopeError(
            "OVERSIZED",
            f"record key is {len(key)} bytes, limit is {MAX_KEY}",
            {"field": "key", "size": len(key), "limit": MAX_KEY},
        )
    if raw is None or len(raw) == 0:
        raise EnvelopeError("EMPTY", "record has no value")
    if len(raw) > max_bytes:
        raise EnvelopeError(
            "OVERSIZED",
            f"envelope is {len(raw)} bytes, limit is {max_bytes}",
            {"size": len(raw), "limit": max_bytes},
        )
    try:
        doc = codecs.loads(raw)
    except ValueError as exc:
        raise EnvelopeError("MALFORMED_JSON", f"value is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError(
            "NOT_AN_OBJECT", f"envelope must be a JSON object, got {type(doc).__name__}"
        )
    return doc


def _check_id(doc: dict[str, Any], name: str, partial: dict[str, Any]) -> None:
    """A required id (``op``, ``session_id``, ``node_id``): a non-empty bounded string."""
    if name not in doc:
        raise EnvelopeError("MISSING_FIELD", f"'{name}' is required", {"field": name}, partial)
    v = doc[name]
    if not isinstance(v, str):
        raise EnvelopeError(
            "WRONG_TYPE",
            f"'{name}' must be a string, got {type(v).__name__}",
            {"field": name},
            partial,
        )
    if not v:
        raise EnvelopeError("WRONG_TYPE", f"'{name}' must not be empty", {"field": name}, partial)
    if len(v) > MAX_ID:
        raise EnvelopeError(
            "OVERSIZED",
            f"'{name}' is {len(v)} characters, limit is {MAX_ID}",
            {"field": name, "size": len(v), "limit": MAX_ID},
            partial,
        )


def _optional_fields(
    doc: dict[str, Any], partial: dict[str, Any]
) -> tuple[str | None, str | None, dict[str, Any]]:
    """(msg_id, origin, payload), each checked: a bounded string or null, a non-empty
    bounded string or null, an object (null or absent: ``{}``)."""
    msg_id = doc.get("msg_id")
    if msg_id is not None and not isinstance(msg_id, str):
        raise EnvelopeError(
            "WRONG_TYPE",
            f"'msg_id' must be a string or null, got {type(msg_id).__name__}",
            {"field": "msg_id"},
            partial,
        )
    if msg_id is not None and len(msg_id) > MAX_ID:
        raise EnvelopeError(
            "OVERSIZED",
            f"'msg_id' is {len(msg_id)} characters, limit is {MAX_ID}",
            {"field": "msg_id", "size": len(msg_id), "limit": MAX_ID},
            partial,
        )
    origin = doc.get("origin")
    if origin is not None and not (isinstance(origin, str) and 0 < len(origin) <= MAX_ORIGIN):
        raise EnvelopeError(
            "WRONG_TYPE",
            f"'origin' must be a non-empty string of at most {MAX_ORIGIN} characters or null",
            {"field": "origin"},
            partial,
        )
    payload = doc.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise EnvelopeError(
            "WRONG_TYPE",
            f"'payload' must be an object, got {type(payload).__name__}",
            {"field": "payload"},
            partial,
        )
    return msg_id, origin, payload


def _check_key(key: bytes | None, session_id: str, partial: dict[str, Any]) -> None:
    """The record key must be the UTF-8 session id (it decides the session's partition)."""
    if key is None:
        raise EnvelopeError(
            "KEY_MISMATCH",
            "record has no key: the key must be the UTF-8 session_id (without it the "
            "session's commands would be spread over partitions and lose their order)",
            {"key": None},
            partial,
        )
    if key != session_id.encode("utf-8"):
        raise EnvelopeError(
            "KEY_MISMATCH",
            "record key must be the UTF-8 session_id (it decides the session's partition)",
            {"key": key.decode("utf-8", "replace")},
            partial,
        )
