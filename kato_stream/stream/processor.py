"""One command in, one outcome out: the stream layer's logic, free of Faust and Kafka I/O.

The agent hands every input record to :meth:`Processor.process` together with a lookup of
the session table, and performs the I/O the returned :class:`Outcome` asks for (output
record, table write, pattern events, dead letter).  Keeping this pure makes the replay
rules testable without a broker and keeps the agent a thin loop.

Replay rule (documented in ``docs/stream.md``): the table value of a session stores the
source (topic, partition, offset) of the last command applied to it.  A record of the same
topic and partition with an offset at or below it is a redelivery or replay: it changes
nothing and produces **no** output (its output was produced when it was first applied).

The session's two bulky lists, KATO's last observe-time predictions (spec §4.1, shown by
cognition-data; about 160 KB at the default 100 predictions) and the last full-path future
potentials (returned by the single-symbol fast path; about 45 KB), can be kept out of the
table value (``external_lists``): the value then holds only their ids (``predictions_id``,
``future_potentials_id``) and the agent writes a changed list to Redis (:mod:`.session_lists`)
before the table.  A command that may read one (:func:`reads`) first comes back as
``Outcome.needs``; the agent loads the lists and calls :meth:`Processor.process` again with
them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from kato_stream.contracts import (
    DeadLetter,
    Error,
    Ident,
    OutputRecord,
    PatternEvent,
    SourceRef,
    Status,
    TableValue,
    as_error,
)
from kato_stream.core.errors import CommandError, KatoError
from kato_stream.core.hierarchy import PATTERN_PREFIX, level_session_id, unravel
from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.stream import codecs
from kato_stream.stream.envelope import MAX_KEY, Envelope, EnvelopeError, parse_envelope
from kato_stream.stream.expiry import expired, is_tick
from kato_stream.stream.ltm import LtmRegistry, NodeMemory, clear_event_dict, learn_event_dict


@dataclass(frozen=True)
class Source:
    """Where an input record came from; part of every output record and dead letter."""

    topic: str
    partition: int
    offset: int

    def to_dict(self) -> SourceRef:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    def to_id(self) -> str:
        """``"topic:partition:offset"``: the command's identity when it has no msg_id."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass
class Handled:
    """What the engine adapter returns for one accepted command."""

    state: dict[str, Any] | None
    stm_length: int
    time: int
    response: dict[str, Any]
    predictions: Sequence[dict[str, Any]]
    future_potentials: Sequence[dict[str, Any]]
    learned: list[LearnEvent]
    cleared: str | None
    recall_threshold: float


class EngineAdapter(Protocol):
    """The engine seen by the stream layer (the real one is :mod:`.engine_adapter`)."""

    def handle(
        self, env: Envelope, source: Source, state: dict[str, Any] | None, mem: NodeMemory
    ) -> Handled: ...

    def summary(self, state: dict[str, Any] | None) -> tuple[int, int]:
        """(stm_length, time) of a stored state, for rejection records."""
        ...


@dataclass
class Outcome:
    """The I/O one input record causes.  ``duplicate`` outcomes cause none."""

    key: bytes | None = None
    record: OutputRecord | None = None
    session_id: str | None = None
    table_value: TableValue | None = None
    dead_letter: DeadLetter | None = None
    pattern_events: list[tuple[str, bytes]] = field(default_factory=list)
    """(node id, encoded pattern event) for ``kato.patterns``, each within the size limit."""
    duplicate: bool = False
    observed: dict[str, tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)
    """Changed bulky lists to store outside the table: field -> (id, list)."""
    needs: dict[str, str] = field(default_factory=dict)
    """Nothing was applied: call again with these stored lists (field -> id)."""
    tick: bool = False
    """A worker's tick (expiry.py): it moves the partition's stream time, nothing else."""
    forwards: list[Forward] = field(default_factory=list)
    """Observes of the learned pattern names for the level session (``forward_to``), sent to
    the input topic after the output record (docs/hierarchy.md)."""


@dataclass(frozen=True)
class Forward:
    """One learned pattern name on its way up a node chain: an input record to publish."""

    key: bytes
    value: bytes
    from_node: str
    to_node: str


def forward_id(env: Envelope, source: Source, index: int) -> str:
    """The ``msg_id`` of the ``index``-th forward of a learning command: derived from the
    command's identity (its msg_id, else origin, else coordinates), so a redelivery or a crash
    sends the same ids and the level session applies each once (its idempotency window)."""
    ident = "m:" + env.msg_id if env.msg_id else f"o:{env.origin or source.to_id()}"
    raw = f"{ident}|{env.node_id}|{index}".encode()
    return "fwd-" + hashlib.blake2b(raw, digest_size=12).hexdigest()


def forwards(env: Envelope, source: Source, to_node: str, names: list[str]) -> list[Forward]:
    """The level session's observes of ``names`` (learned, in order), one record each."""
    sid = level_session_id(env.session_id, to_node)
    key = sid.encode("utf-8")
    return [
        Forward(
            key,
            codecs.dumps(
                {
                    "op": "observe",
                    "session_id": sid,
                    "node_id": to_node,
                    "msg_id": forward_id(env, source, i),
                    "payload": {"strings": [PATTERN_PREFIX + name]},
                }
            ),
            env.node_id,
            to_node,
        )
        for i, name in enumerate(names)
    ]


def _ident(partial: Mapping[str, Any]) -> Ident:
    """The ids of a command whose envelope could only partly be read (None where unknown)."""
    return {
        "session_id": partial.get("session_id"),
        "node_id": partial.get("node_id"),
        "msg_id": partial.get("msg_id"),
        "op": partial.get("op"),
    }


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


#: Room kept in a dead letter for everything but the original bytes (ids, source, error).
DEAD_LETTER_OVERHEAD = 16_384
#: Bytes of an oversized original kept in its dead letter (the rest is on the input topic).
DEAD_LETTER_PREFIX = 4096


#: Largest encoded ``error`` of a rejection: its details can quote the input.
MAX_ERROR_BYTES = 8192


def bounded_error(error: Error) -> Error:
    """``error`` as it fits a rejection record: details that quote a large input dropped."""
    if len(codecs.dumps(error)) <= MAX_ERROR_BYTES:
        return error
    message = str(error.get("message", ""))[:1024]
    return {"code": error.get("code"), "message": message, "details": {"truncated": True}}


def bounded_bytes(prefix: str, raw: bytes | None, room: int) -> dict[str, Any]:
    """``raw`` for a dead letter: base64 under ``{prefix}_b64`` if it fits ``room`` bytes,
    else its first bytes, its size and its SHA-256 (the whole record stays on the input
    topic at the dead letter's source coordinates)."""
    if raw is None or 4 * ((len(raw) + 2) // 3) <= room:
        return {f"{prefix}_b64": _b64(raw)}
    keep = max(0, min(DEAD_LETTER_PREFIX, room // 2 * 3 // 4))
    return {
        f"{prefix}_b64": _b64(raw[:keep]),
        f"{prefix}_truncated": True,
        f"{prefix}_size": len(raw),
        f"{prefix}_sha256": hashlib.sha256(raw).hexdigest(),
    }


def output_key(key: bytes | None, session_id: str | None) -> bytes | None:
    """The output record's key: the input's (the session id), or a digest of a key too long
    to copy, so an oversized key still maps to one partition."""
    if key is not None and len(key) > MAX_KEY:
        return b"sha256:" + hashlib.sha256(key).hexdigest().encode("ascii")
    if key is not None:
        return key
    return session_id.encode("utf-8") if session_id else None


def command_id(env: Envelope, source: Source) -> str:
    """A command's idempotency key, hashed to 12 characters for the session's window:
    its ``msg_id``, else the identity of the record it replays (``origin``), else its own
    coordinates (so a replay of an id-less command is recognised too)."""
    ident = "m:" + env.msg_id if env.msg_id else f"o:{env.origin or source.to_id()}"
    digest = hashlib.blake2b(ident.encode("utf-8"), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def _is_applied(stored: TableValue | None, source: Source) -> bool:
    if not stored:
        return False
    last = stored.get("applied")
    return (
        last is not None
        and last["topic"] == source.topic
        and last["partition"] == source.partition
        and source.offset <= last["offset"]
    )


def _slide(stored: TableValue | None, ts: int | None) -> TableValue | None:
    """``stored`` with ``seen``, the largest timestamp of the session's commands, moved to
    ``ts`` if later (every command reaching the session slides its TTL)."""
    if stored is None or ts is None:
        return stored
    seen = stored.get("seen")
    if seen is not None and seen >= ts:
        return stored
    return {**stored, "seen": ts}


def remember(ids: list[str] | None, cid: str, window: int) -> list[str]:
    """The session's window of applied command ids with ``cid`` added (oldest dropped)."""
    out = [*(ids or ()), cid]
    return out[-window:] if len(out) > window else out


#: The session state's bulky lists that may live outside the table, each with its id key.
BULKY = {"predictions": "predictions_id", "future_potentials": "future_potentials_id"}


def reads(field_name: str, op: str, state: dict[str, Any]) -> bool:
    """Whether ``op`` on ``state`` may read the stored list ``field_name``.

    predictions: only ``get`` shows them (cognition-data).  future_potentials: only the
    single-symbol fast path returns them, which needs an STM of at most one symbol before
    the command (an observe appends to it; an empty observe leaves it), or an
    ``observe_sequence`` (CLEAR mode empties the STM between its observations)."""
    if field_name == "predictions":
        return op == "get"
    return op == "observe_sequence" or sum(len(e) for e in state.get("stm", ())) <= 1


def stored_outside(state: dict[str, Any] | None) -> dict[str, str]:
    """field -> id of the bulky lists of a stored state that live outside the table."""
    if not state:
        return {}
    out = {}
    for name, id_key in BULKY.items():
        ident = state.get(id_key)
        if ident is not None and name not in state:
            out[name] = str(ident)
    return out


def _ok_record(ident: Ident, source: Source, h: Handled) -> OutputRecord:
    """The output record of a command the engine applied."""
    return {
        "session_id": ident["session_id"],
        "node_id": ident["node_id"],
        "msg_id": ident["msg_id"],
        "op": ident["op"],
        "source": source.to_dict(),
        "status": "ok",
        "error": None,
        "response": h.response,
        "stm_length": h.stm_length,
        "time": h.time,
        "learned_patterns": ["PTRN|" + ev.name for ev in h.learned],
        "predictions": h.predictions,
        "future_potentials": h.future_potentials,
        "recall_threshold": h.recall_threshold,
    }


class Processor:
    """Turns input records into outcomes; owns no I/O."""

    def __init__(
        self,
        engine: EngineAdapter,
        ltm: LtmRegistry,
        *,
        max_bytes: int,
        external_lists: bool = False,
        max_output_bytes: int = 1_000_000,
        idempotency_window: int = 0,
        session_ttl: int | None = None,
    ) -> None:
        self.engine = engine
        self.ltm = ltm
        self.max_bytes = max_bytes
        self.external_lists = external_lists
        self.max_output_bytes = max_output_bytes
        self.idempotency_window = idempotency_window
        self.session_ttl = session_ttl
        """Default TTL (s) of sessions on the stream path; None: sessions never expire."""

    @classmethod
    def from_settings(
        cls, engine: EngineAdapter, ltm: LtmRegistry, settings: Any, *, external_lists: bool = False
    ) -> Processor:
        """The worker's processor: envelope, output and idempotency limits from ``settings``."""
        return cls(
            engine,
            ltm,
            max_bytes=settings.max_message_bytes,
            external_lists=external_lists,
            max_output_bytes=settings.max_output_bytes,
            idempotency_window=settings.idempotency_window,
            session_ttl=settings.session_ttl if settings.session_expiry else None,
        )

    def process(
        self,
        key: bytes | None,
        value: bytes | None,
        source: Source,
        lookup: Any,
        loaded: dict[str, list[dict[str, Any]]] | None = None,
        timestamp_ms: int | None = None,
    ) -> Outcome:
        """Process one record.  ``lookup(session_id)`` returns the stored table value or None;
        ``loaded`` are the stored state's external lists, when the first call asked for
        them (``Outcome.needs``); ``timestamp_ms`` is the record's timestamp (session
        expiry, expiry.py)."""
        if is_tick(key, value):
            return Outcome(tick=True)
        outcome, expired_now = self._process(key, value, source, lookup, loaded, timestamp_ms)
        if expired_now and outcome.record is not None:
            outcome.record["session_expired"] = True
        return outcome

    def _process(
        self,
        key: bytes | None,
        value: bytes | None,
        source: Source,
        lookup: Any,
        loaded: dict[str, list[dict[str, Any]]] | None,
        ts: int | None,
    ) -> tuple[Outcome, bool]:
        try:
            env = parse_envelope(value, key, max_bytes=self.max_bytes)
        except EnvelopeError as exc:
            sid = exc.partial.get("session_id")
            stored = None
            if sid and key == sid.encode("utf-8"):  # only the session this partition owns
                stored = lookup(sid)
                if _is_applied(stored, source):
                    return Outcome(duplicate=True, session_id=sid), False
                stale = self._expired(stored, ts)
                stored = None if stale else _slide(stored, ts)
                return self._reject(
                    key, value, source, as_error(exc.to_dict()), _ident(exc.partial), stored
                ), stale
            return self._reject(
                key, value, source, as_error(exc.to_dict()), _ident(exc.partial), stored
            ), False
        stored = lookup(env.session_id)
        if _is_applied(stored, source):
            return Outcome(duplicate=True, session_id=env.session_id), False
        # An expired session is as if it never was; its old value stays for the sweep.
        stale = self._expired(stored, ts)
        stored = None if stale else _slide(stored, ts)
        return self._apply(env, key, value, source, stored, loaded, ts), stale

    def _expired(self, stored: TableValue | None, ts: int | None) -> bool:
        return (
            self.session_ttl is not None
            and ts is not None
            and expired(stored, ts, self.session_ttl)
        )

    def _apply(
        self,
        env: Envelope,
        key: bytes | None,
        value: bytes | None,
        source: Source,
        stored: TableValue | None,
        loaded: dict[str, list[dict[str, Any]]] | None,
        ts: int | None,
    ) -> Outcome:
        """The command on its live session's stored value (``stored``, with ``seen`` slid to
        the command's timestamp; None: a new session)."""
        state = stored.get("state") if stored else None
        ident: Ident = {
            "session_id": env.session_id,
            "node_id": env.node_id,
            "msg_id": env.msg_id,
            "op": env.op,
        }
        if env.op == "unravel":
            return self._unravel(env, key, value, source, ident, stored)
        if state is not None and stored is not None and stored.get("node_id") != env.node_id:
            err = EnvelopeError(
                "NODE_MISMATCH",
                f"session {env.session_id!r} belongs to node {stored.get('node_id')!r}, not {env.node_id!r}",
                {"session_node_id": stored.get("node_id")},
            )
            return self._reject(key, value, source, as_error(err.to_dict()), ident, stored)
        cid = command_id(env, source) if self.idempotency_window else None
        if cid is not None and stored is not None and cid in stored.get("ids", ()):
            return self._duplicate(env, source, ident, stored)
        external = stored_outside(state)
        if external and state is not None:
            wanted = {f: i for f, i in external.items() if reads(f, env.op, state)}
            if wanted and loaded is None:
                return Outcome(session_id=env.session_id, needs=wanted)
            if wanted and loaded is not None:
                state = {**state, **{f: loaded.get(f, []) for f in wanted}}
        try:
            h = self.engine.handle(env, source, state, self.ltm.node(env.node_id))
        except KatoError as exc:
            return self._reject(key, value, source, as_error(exc.to_dict()), ident, stored)
        record = _ok_record(ident, source, h)
        docs: list[PatternEvent] = [learn_event_dict(ev) for ev in h.learned]
        if h.cleared is not None:
            docs.append(clear_event_dict(env.node_id, h.cleared))
        # Each learn fits: the engine's admit hook (engine_adapter.pattern_guard) refused
        # any larger one before it changed the knowledge base.
        events = [(env.node_id, codecs.dumps(doc)) for doc in docs]
        up = ((h.state or {}).get("config") or {}).get("forward_to") if h.learned else None
        new_state, observed = self._split_lists(state, h.state, external)
        table_value = self._table_value(env, source, stored, new_state, ts, cid)
        size = self.state_size(env.session_id, table_value)
        if size > self.max_output_bytes:
            rejected = self._too_large(
                "STATE_TOO_LARGE", "session state", size, ident, key, value, source, stored
            )
            # Learns of the command already changed the node's knowledge base (an
            # auto-learn before the observation that overflowed): they are published all
            # the same, so every worker's copy of the node stays the same.
            rejected.pattern_events = events
            return rejected
        return Outcome(
            key=env.session_id.encode("utf-8"),
            record=record,
            session_id=env.session_id,
            table_value=table_value,
            pattern_events=events,
            observed=observed,
            forwards=forwards(env, source, up, [ev.name for ev in h.learned]) if up else [],
        )

    def _table_value(
        self,
        env: Envelope,
        source: Source,
        stored: TableValue | None,
        new_state: dict[str, Any] | None,
        ts: int | None,
        cid: str | None,
    ) -> TableValue:
        """The session's new table value: its state (None: closed), the command applied, the
        newest timestamp seen (kept from the stored value) and the window of applied ids."""
        table_value: TableValue = {
            "node_id": env.node_id if new_state is not None else None,
            "state": new_state,
            "applied": source.to_dict(),
        }
        seen = stored.get("seen") if stored else ts
        if seen is not None:
            table_value["seen"] = seen
        if cid is not None:
            table_value["ids"] = remember(
                stored.get("ids") if stored else None, cid, self.idempotency_window
            )
        return table_value

    def _known_kb(self, node_id: str) -> KnowledgeBase:
        """The node's knowledge base, without creating a node for an unknown id."""
        mem = self.ltm.nodes.get(node_id)
        return mem.kb if mem is not None else KnowledgeBase(node_id=node_id)

    def _unravel(
        self,
        env: Envelope,
        key: bytes | None,
        value: bytes | None,
        source: Source,
        ident: Ident,
        stored: TableValue | None,
    ) -> Outcome:
        """``unravel``: the level-0 events of a pattern of this node, down the chain of nodes
        ``payload.down`` (core/hierarchy.py).  Reads the knowledge bases only; the session
        is left as it is."""
        p = env.payload
        name, down = p.get("pattern"), p.get("down", [])
        try:
            if not isinstance(name, str) or not name:
                raise CommandError("unravel: payload.pattern must be a pattern name")
            if not isinstance(down, list) or not all(isinstance(n, str) and n for n in down):
                raise CommandError(
                    "unravel: payload.down must be a list of node ids, level k-1 first"
                )
            nodes = [env.node_id, *down]
            events = unravel(self._known_kb, name, nodes)
        except KatoError as exc:
            return self._reject(key, value, source, as_error(exc.to_dict()), ident, stored)
        record = self._unapplied(ident, source, "ok", None, stored)
        record["response"] = {
            "pattern": name if name.startswith(PATTERN_PREFIX) else PATTERN_PREFIX + name,
            "nodes": nodes,
            "events": events,
        }
        return Outcome(key=output_key(key, env.session_id), record=record)

    def state_size(self, session_id: str, table_value: TableValue) -> int:
        """Bytes of the session's changelog record (key and value) as Faust will write it."""
        return len(codecs.dumps(table_value)) + len(session_id.encode("utf-8")) + 2

    def _too_large(
        self,
        code: str,
        what: str,
        size: int,
        ident: Ident,
        key: bytes | None,
        value: bytes | None,
        source: Source,
        stored: TableValue | None,
    ) -> Outcome:
        """Reject a command whose effects cannot be written: nothing of it is applied."""
        limit = self.max_output_bytes
        err: Error = {
            "code": code,
            "message": f"the command's {what} would be {size} bytes, limit is {limit}: "
            "nothing was applied (send smaller observations, or raise "
            "KATO_STREAM_MAX_OUTPUT_BYTES with the topics' max.message.bytes)",
            "details": {"size": size, "limit": limit},
        }
        return self._reject(key, value, source, err, ident, stored)

    def _unapplied(
        self,
        ident: Ident,
        source: Source,
        status: Status,
        error: Error | None,
        stored: TableValue | None,
    ) -> OutputRecord:
        """The output record of a command that changed nothing (rejected or duplicate):
        the session's STM length and time as they are."""
        stm_length, time_ = self.engine.summary(stored.get("state") if stored else None)
        return {
            "session_id": ident["session_id"],
            "node_id": ident["node_id"],
            "msg_id": ident["msg_id"],
            "op": ident["op"],
            "source": source.to_dict(),
            "status": status,
            "error": error,
            "response": None,
            "stm_length": stm_length,
            "time": time_,
            "learned_patterns": [],
            "predictions": [],
            "future_potentials": [],
            "recall_threshold": None,
        }

    def _duplicate(
        self, env: Envelope, source: Source, ident: Ident, stored: TableValue
    ) -> Outcome:
        """A command whose id the session applied already: answered, nothing changed."""
        error: Error = {
            "code": "DUPLICATE",
            "message": "this session already applied a command with this id "
            + ("(msg_id)" if env.msg_id else "(origin)")
            + ": nothing was changed",
            "details": {"msg_id": env.msg_id, "origin": env.origin},
        }
        record = self._unapplied(ident, source, "duplicate", error, stored)
        return Outcome(
            key=env.session_id.encode("utf-8"),
            record=record,
            session_id=env.session_id,
            table_value={**stored, "applied": source.to_dict()},
        )

    def _split_lists(
        self, old: dict[str, Any] | None, new: dict[str, Any] | None, external: dict[str, str]
    ) -> tuple[dict[str, Any] | None, dict[str, tuple[str, list[dict[str, Any]]]]]:
        """The table's state (bulky lists left out where they are stored outside) and the
        changed lists to store outside."""
        if not self.external_lists or new is None:
            return new, {}
        observed: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        drop = set()
        for name, id_key in BULKY.items():
            ident = new.get(id_key)
            if ident is None:
                continue  # an empty list: kept inline
            if ident != (old.get(id_key) if old else None):  # changed: stored, then table
                observed[name] = (str(ident), new[name])
                drop.add(name)
            elif name in external:  # unchanged and already outside
                drop.add(name)
            # else unchanged and inline (written before, or after a failed store): stays
        if drop:
            new = {k: v for k, v in new.items() if k not in drop}
        return new, observed

    @staticmethod
    def truncate(record: OutputRecord, size: int, limit: int) -> OutputRecord:
        """``record`` without its bulky parts, for an output larger than the broker accepts.

        The command was applied (state, learns); only its predictions, future potentials and
        response are dropped, and the error says why and how to avoid it."""
        return {
            **record,
            "status": "truncated",
            "error": {
                "code": "OUTPUT_TOO_LARGE",
                "message": f"output record is {size} bytes, limit is {limit}: the command was "
                "applied, its predictions were dropped (lower max_predictions or raise "
                "KATO_STREAM_MAX_OUTPUT_BYTES with the topic's max.message.bytes)",
                "details": {"size": size, "limit": limit},
            },
            "response": None,
            "predictions": [],
            "future_potentials": [],
        }

    def _reject(
        self,
        key: bytes | None,
        value: bytes | None,
        source: Source,
        error: Error,
        ident: Ident,
        stored: TableValue | None,
    ) -> Outcome:
        error = bounded_error(error)
        record = self._unapplied(ident, source, "rejected", error, stored)
        limit = self.max_output_bytes
        key_room = min(2 * MAX_KEY, limit // 8)
        value_room = limit - min(DEAD_LETTER_OVERHEAD, limit // 4) - key_room
        dead = cast(  # bounded_bytes gives the *_b64 fields, and the *_truncated ones if cut
            DeadLetter,
            {
                **ident,
                "source": source.to_dict(),
                **bounded_bytes("key", key, key_room),
                **bounded_bytes("value", value, value_room),
                "error": error,
            },
        )
        table_value: TableValue | None = None
        if stored is not None and ident["session_id"]:
            # remember the offset so a redelivered rejection is not dead-lettered twice
            table_value = {**stored, "applied": source.to_dict()}
        out_key = output_key(key, ident["session_id"])
        return Outcome(
            key=out_key,
            record=record,
            session_id=ident["session_id"] if table_value is not None else None,
            table_value=table_value,
            dead_letter=dead,
        )
