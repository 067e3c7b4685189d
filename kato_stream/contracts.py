"""The data contracts, typed once: what goes on the topics and into the session table.

Each contract has a JSON Schema in ``topics/schemas/`` (for clients in other languages) and
a ``TypedDict`` here (for this code): the producers build these types and the readers read
them, so a field added or renamed in one place and not the other is a type error, and
``tests/test_contracts.py`` fails when a type and its schema disagree.

=====================  ==========================  =====================================
contract               topic / place               built by
=====================  ==========================  =====================================
:class:`OutputRecord`  ``kato.predictions``        stream/processor.py
:class:`TableValue`    the ``sessions`` table      stream/processor.py
:class:`LearnEvent`,   ``kato.patterns``           stream/ltm/events.py (core LearnEvent)
:class:`ClearEvent`
:class:`DeadLetter`    ``kato.dlq``                stream/processor.py
=====================  ==========================  =====================================

docs/contracts.md describes their meaning.
"""

# No ``from __future__ import annotations``: TypedDict reads NotRequired at runtime (tests
# compare the required keys with the schemas).
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "MSG_ID_HEADER",
    "PATTERNS_HEADER",
    "PROCESSING_HEADER",
    "RECEIVED_HEADER",
    "SOURCE_HEADER",
    "STATUS_HEADER",
    "WORKER_HEADER",
    "ClearEvent",
    "DeadLetter",
    "Error",
    "Ident",
    "LearnEvent",
    "OutputRecord",
    "PatternEvent",
    "SourceRef",
    "Status",
    "TableValue",
    "as_error",
]


#: Headers of every output record that repeat what a reader needs to pick its answer, so a
#: reader waiting for some answers (the gateway) decodes those and skips the rest unread:
#: the command's msg_id (absent when it had none), its input "<partition>:<offset>" and status.
MSG_ID_HEADER = "kato-msg-id"
SOURCE_HEADER = "kato-source"
STATUS_HEADER = "kato-status"
#: The ``kato.patterns`` "<partition>:<offset>,..." of the pattern events a command produced
#: (only on a record of a command that learned: stream/persisted.py).
PATTERNS_HEADER = "kato-patterns"
#: Seconds the worker spent on the command (a decimal string).
PROCESSING_HEADER = "kato-processing-seconds"
#: When the worker took the command (Unix seconds, a decimal string).
RECEIVED_HEADER = "kato-received-at"
#: The id of the worker that answered.
WORKER_HEADER = "kato-worker"


class SourceRef(TypedDict):
    """Where an input record came from (every output record and dead letter names it)."""

    topic: str
    partition: int
    offset: int


class Error(TypedDict):
    """Why a command was not (fully) applied: a stable ``code``, a message, details."""

    code: str | None
    message: str
    details: Any


class Ident(TypedDict):
    """The command a record answers (as far as its envelope could be read)."""

    session_id: str | None
    node_id: str | None
    msg_id: str | None
    op: str | None


Status = Literal["ok", "rejected", "truncated", "duplicate"]


class OutputRecord(Ident):
    """One per input command on ``kato.predictions`` (topics/schemas/prediction.schema.json)."""

    source: SourceRef
    status: Status
    error: Error | None
    response: dict[str, Any] | None
    stm_length: int
    time: int
    learned_patterns: list[str]
    predictions: Sequence[dict[str, Any]]
    future_potentials: Sequence[dict[str, Any]]
    recall_threshold: float | None
    session_expired: NotRequired[Literal[True]]
    """Present only when the command found its session expired (stream/expiry.py)."""


class TableValue(TypedDict):
    """A session's value in the ``sessions`` table (its changelog is the session's truth)."""

    node_id: str | None
    state: dict[str, Any] | None
    """core SessionState.to_dict(); None once closed."""
    applied: SourceRef
    """The last command applied: a record at or below it is a redelivery (no effects)."""
    seen: NotRequired[int]
    """Newest record timestamp (ms) of its commands: session expiry (stream/expiry.py)."""
    ids: NotRequired[list[str]]
    """Ids of its last applied commands (the idempotency window)."""


class LearnEvent(TypedDict):
    """A learn on ``kato.patterns`` (topics/schemas/pattern_event.schema.json)."""

    type: Literal["learn"]
    node_id: str
    learn_id: str
    name: str
    events: list[list[str]]
    emotives: Any
    metadata: Any
    persistence: int
    vectors: Any


class ClearEvent(TypedDict):
    """A clear-all of a node on ``kato.patterns``."""

    type: Literal["clear"]
    node_id: str
    clear_id: str


PatternEvent = LearnEvent | ClearEvent


class DeadLetter(Ident):
    """A rejected input on ``kato.dlq`` (topics/schemas/dead_letter.schema.json): the
    original bytes (or, when too large, their first bytes, size and SHA-256)."""

    source: SourceRef
    key_b64: str | None
    value_b64: str | None
    error: Error
    key_truncated: NotRequired[bool]
    key_size: NotRequired[int]
    key_sha256: NotRequired[str]
    value_truncated: NotRequired[bool]
    value_size: NotRequired[int]
    value_sha256: NotRequired[str]


def as_error(d: Mapping[str, Any]) -> Error:
    """An :class:`Error` from a ``{"code", "message", "details"}`` mapping (the form
    ``core.errors.KatoError.to_dict`` and ``EnvelopeError.to_dict`` give: the core imports
    nothing of the stream's contracts)."""
    return {
        "code": d.get("code"),
        "message": str(d.get("message", "")),
        "details": d.get("details"),
    }
