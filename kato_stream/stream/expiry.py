"""Session expiry on the stream path, decided by record timestamps (never the worker's clock).

KATO forgets a session after ``ttl_seconds`` without an access (a sliding TTL).  A stream
processor that decided by its own clock would give a different answer on every replay and
after every lag, so the rule here reads only what the log holds:

* **At a command** (:func:`expired`): the session's table value keeps ``seen``, the largest
  record timestamp (ms) of the commands applied to it.  A command whose record timestamp is
  more than the session's TTL after ``seen`` finds it expired and starts a fresh session
  (its output record carries ``"session_expired": true``).  The TTL is the session's own
  ``ttl_seconds`` (from ``open``), else ``SESSION_TTL``.  Same log, same answers.
* **Removal** (:class:`ExpiryIndex`, run by the agent's sweep): a worker deletes an expired
  session from its partition (a table tombstone, its Redis lists, its latest record) once
  the partition's *stream time*, the newest record timestamp processed in it, is past
  ``seen + ttl + grace``, and the session's last command is committed (a redelivered
  command must still find the value it was applied to).  Removal only forgets what the
  next command would discard anyway, unless that command's timestamp is more than
  ``KATO_STREAM_SESSION_EXPIRY_GRACE_SECONDS`` older than its partition's stream time (a
  record that late may find its session removed: Kafka Streams' grace period).
* **Idle partitions** (:meth:`ExpiryIndex.needs_tick`): stream time moves only with records.
  When a partition has had no record for a sweep interval and holds sessions that are due
  by the clock, the worker appends a *tick* (key :data:`TICK_KEY`, empty value, the worker's
  clock as its timestamp) to that input partition.  The tick is in the log, so a replay of
  the partition removes the same sessions; the processor answers it with nothing.

Table values written before this rule have no ``seen``: they never expire until their next
command sets it.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TICK_KEY",
    "ExpiryIndex",
    "deadline",
    "expired",
    "is_tick",
    "ttl_ms",
]

#: Key of the records a worker appends to an idle input partition to move its stream time.
TICK_KEY = b"kato-stream:tick"


def is_tick(key: bytes | None, value: bytes | None) -> bool:
    """Whether an input record is a worker's tick (an empty record under :data:`TICK_KEY`)."""
    return key == TICK_KEY and not value


def ttl_ms(stored: Mapping[str, Any], default_ttl: int) -> int:
    """The session's TTL in ms: its own ``ttl_seconds`` (from ``open``), else the default."""
    state = stored.get("state") or {}
    ttl = state.get("ttl_seconds")
    return int(ttl if ttl else default_ttl) * 1000


def expired(stored: Mapping[str, Any] | None, timestamp_ms: int, default_ttl: int) -> bool:
    """Whether a command with record timestamp ``timestamp_ms`` finds the stored session
    expired (idle for more than its TTL); a value without ``seen`` never is."""
    if not stored or stored.get("seen") is None or stored.get("state") is None:
        return False
    return timestamp_ms - int(stored["seen"]) > ttl_ms(stored, default_ttl)


def deadline(stored: Mapping[str, Any] | None, default_ttl: int, grace_ms: int) -> int | None:
    """Stream time (ms) past which the session may be removed; None: never (no ``seen``)."""
    if not stored or stored.get("seen") is None:
        return None
    return int(stored["seen"]) + ttl_ms(stored, default_ttl) + grace_ms


@dataclass
class _Partition:
    stream_time: int | None = None
    heap: list[tuple[int, str]] = field(default_factory=list)
    deadlines: dict[str, int] = field(default_factory=dict)  # session -> its current one
    last_record: float = 0.0  # worker clock (monotonic s) of the partition's last record
    tick_sent: float | None = None  # worker clock of the tick not yet processed


class ExpiryIndex:
    """Per input partition: its stream time and the sessions' removal deadlines.

    A heap orders the deadlines; a session's later write leaves its older entry stale
    (skipped when popped), and the heap is rebuilt when stale entries outnumber live ones,
    so its size stays within twice the partition's sessions."""

    def __init__(self, default_ttl: int, grace_seconds: float) -> None:
        self.default_ttl = default_ttl
        self.grace_ms = int(grace_seconds * 1000)
        self._parts: dict[int, _Partition] = {}

    def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
        return part

    def reset(self, partitions: set[int]) -> None:
        """Forget partitions no longer assigned (their stream time included: the next owner
        learns it again from the records it processes)."""
        for p in list(self._parts):
            if p not in partitions:
                del self._parts[p]

    def advance(self, partition: int, timestamp_ms: int, now: float, tick: bool = False) -> None:
        """A record of ``partition`` was processed (``now``: the worker's monotonic clock)."""
        part = self._part(partition)
        if part.stream_time is None or timestamp_ms > part.stream_time:
            part.stream_time = timestamp_ms
        part.last_record = now
        if tick:
            part.tick_sent = None

    def stream_time(self, partition: int) -> int | None:
        part = self._parts.get(partition)
        return None if part is None else part.stream_time

    def touch(self, partition: int, session_id: str, stored: Mapping[str, Any] | None) -> None:
        """The session's table value was written: remember its removal deadline."""
        due = deadline(stored, self.default_ttl, self.grace_ms)
        part = self._part(partition)
        if due is None:
            part.deadlines.pop(session_id, None)
            return
        if part.deadlines.get(session_id) == due:
            return
        part.deadlines[session_id] = due
        heapq.heappush(part.heap, (due, session_id))
        if len(part.heap) > 2 * len(part.deadlines) + 64:
            part.heap = [(d, s) for s, d in part.deadlines.items()]
            heapq.heapify(part.heap)

    def forget(self, partition: int, session_id: str) -> None:
        """The session was removed (or its value deleted)."""
        part = self._parts.get(partition)
        if part is not None:
            part.deadlines.pop(session_id, None)

    def due(self, partition: int, limit: int | None = None) -> list[str]:
        """Session ids whose deadline the partition's stream time has passed, in deadline
        order.  They leave the index: the caller removes each or, if it must keep one for
        now (its last command not committed yet), puts it back with :meth:`touch`."""
        part = self._parts.get(partition)
        if part is None or part.stream_time is None:
            return []
        out: list[str] = []
        while part.heap and part.heap[0][0] < part.stream_time:
            if limit is not None and len(out) >= limit:
                break
            due, sid = heapq.heappop(part.heap)
            if part.deadlines.get(sid) == due:  # else stale: the session was written since
                del part.deadlines[sid]
                out.append(sid)
        return out

    def needs_tick(self, partition: int, now: float, now_ms: int, idle_seconds: float) -> bool:
        """Whether to append a tick to ``partition``: no record for ``idle_seconds``, no tick
        on its way, and a session due by the worker's clock that stream time has not reached."""
        part = self._parts.get(partition)
        if part is None or not part.deadlines or part.tick_sent is not None:
            return False
        if now - part.last_record < idle_seconds:
            return False
        while part.heap and part.deadlines.get(part.heap[0][1]) != part.heap[0][0]:
            heapq.heappop(part.heap)  # stale
        if not part.heap:
            return False
        first = part.heap[0][0]
        return first < now_ms and (part.stream_time is None or first >= part.stream_time)

    def tick_sent(self, partition: int, now: float) -> None:
        self._part(partition).tick_sent = now

    def tick_lost(self, partition: int, now: float, after: float) -> None:
        """A tick sent more than ``after`` seconds ago and never processed: allow another."""
        part = self._parts.get(partition)
        if part is not None and part.tick_sent is not None and now - part.tick_sent > after:
            part.tick_sent = None

    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def __len__(self) -> int:
        """Sessions with a removal deadline (the live sessions of the partitions)."""
        return sum(len(p.deadlines) for p in self._parts.values())
