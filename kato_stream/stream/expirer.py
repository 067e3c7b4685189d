"""The worker side of session expiry: removing expired sessions and ticking idle partitions.

The rule is :mod:`.expiry`'s (record timestamps only); this module does the I/O it asks for.
:meth:`SessionExpirer.sweep` runs between the agent's batches (never while a batch holds
table values not yet written, whose lists it could otherwise delete from under them) and
removes, per assigned partition, each session the partition's stream time has left behind
whose last command is committed: a tombstone on the table's changelog, the Redis lists its
value names and its latest record.  :meth:`SessionExpirer.tick` appends a tick to an idle
partition that holds sessions due by the clock (expiry.py explains why that keeps replays
deterministic).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kato_stream import compat, metrics
from kato_stream.stream.continuity import assigned_partitions, committed_offset
from kato_stream.stream.expiry import TICK_KEY, ExpiryIndex
from kato_stream.stream.processor import stored_outside

__all__ = ["SessionExpirer", "applied_partition"]

log = logging.getLogger(__name__)


class SessionExpirer:
    """Owns the worker's :class:`~.expiry.ExpiryIndex` and acts on it."""

    def __init__(
        self,
        *,
        app: Any,
        sessions: Any,
        input_topic: Any,
        input_name: str,
        default_ttl: int,
        grace_seconds: float,
        sweep_seconds: float,
        lists: Any = None,
        latest: Any = None,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.input_topic = input_topic
        self.input_name = input_name
        self.lists = lists
        self.latest = latest
        self.sweep_seconds = sweep_seconds
        self.index = ExpiryIndex(default_ttl, grace_seconds)

    # -- what the agent tells it ------------------------------------------------------------

    def owned(self) -> set[int]:
        """The input partitions assigned to this worker now."""
        return assigned_partitions(self.app, self.input_name)

    def rescan(self) -> int:
        """Index the table's sessions of the owned partitions (after an assignment, once the
        table is recovered); returns how many have a deadline."""
        owned = self.owned()
        self.index.reset(owned)
        for sid, value in list(self.sessions.items()):
            partition = applied_partition(value, self.input_name)
            if partition in owned:
                self.index.touch(partition, sid, value)
        metrics.set_sessions_live(len(self.index), len(self.sessions))
        return len(self.index)

    def record(self, partition: int, timestamp: float, tick: bool) -> None:
        """An input record of ``partition`` with ``timestamp`` (s) reached the agent."""
        self.index.advance(partition, round(timestamp * 1000), time.monotonic(), tick)

    def written(self, partition: int, session_id: str, value: dict[str, Any] | None) -> None:
        """The agent wrote the session's table value."""
        self.index.touch(partition, session_id, value)

    # -- what it does ----------------------------------------------------------------------

    async def sweep(self, limit: int = 1000) -> tuple[int, bool]:
        """Remove up to ``limit`` expired sessions of the owned partitions; returns how many
        and whether more are due (the caller yields to the event loop between calls, so a
        mass expiry never holds the worker: its commands, heartbeats and probes)."""
        removed: list[tuple[str, dict[str, Any]]] = []
        owned = self.owned()
        seen = kept = 0
        for partition in self.index.partitions():
            if partition not in owned:  # revoked: its changelog is another worker's now
                continue
            tp = None
            due = self.index.due(partition, limit - seen)
            seen += len(due)
            for sid in due:
                value = self.sessions.get(sid)
                if value is None or applied_partition(value, self.input_name) != partition:
                    continue  # gone, or moved to another partition's topic: not ours
                if tp is None:
                    tp = _tp(self.input_name, partition)
                if committed_offset(self.app, tp) <= int(value["applied"]["offset"]):
                    # a redelivered command must find the value it was applied to
                    self.index.touch(partition, sid, value)
                    kept += 1
                    continue
                compat.faust_table_delete(self.sessions, sid, partition)
                removed.append((sid, value))
            if seen >= limit:
                break
        metrics.set_sessions_live(len(self.index), len(self.sessions))
        more = seen >= limit and not kept  # kept ones wait for a commit: next turn
        if not removed:
            return 0, more
        metrics.observe_session_expired("sweep", len(removed))
        await self._forget_outside(removed)
        log.info("removed %d expired sessions", len(removed))
        return len(removed), more

    async def _forget_outside(self, removed: list[tuple[str, dict[str, Any]]]) -> None:
        """The removed sessions' Redis lists and latest records (the table no longer names
        them; a failure leaves them to the orphan sweep and the latest record's own TTL)."""
        if self.latest is not None:
            for sid, _value in removed:
                self.latest.delete(sid)
        if self.lists is None:
            return
        items = [
            (sid, name, ident)
            for sid, value in removed
            for name, ident in stored_outside(value.get("state")).items()
        ]
        if not items:
            return
        try:
            await self.lists.forget(items)
        except Exception as exc:
            log.warning("dropping the lists of %d expired sessions failed: %s", len(removed), exc)

    async def tick(self) -> int:
        """Append a tick to each owned partition that is idle while sessions are due by the
        clock; returns how many were sent."""
        now, now_ms = time.monotonic(), round(time.time() * 1000)
        sent = 0
        owned = self.owned()
        for partition in self.index.partitions():
            self.index.tick_lost(partition, now, after=10 * self.sweep_seconds)
            if partition not in owned:
                continue
            if not self.index.needs_tick(partition, now, now_ms, self.sweep_seconds):
                continue
            await self.input_topic.send(
                key=TICK_KEY, value=b"", partition=partition, timestamp=now_ms / 1000
            )
            self.index.tick_sent(partition, now)
            metrics.observe_session_tick()
            sent += 1
        return sent


def applied_partition(value: Any, input_name: str) -> int | None:
    """The input partition of a session's table value (of its last applied command), None
    when that command came from another topic."""
    applied = (value or {}).get("applied") or {}
    if applied.get("topic") != input_name:
        return None
    partition = applied.get("partition")
    return int(partition) if partition is not None else None


def _tp(topic: str, partition: int) -> Any:
    from faust.types import TP

    return TP(topic, partition)
