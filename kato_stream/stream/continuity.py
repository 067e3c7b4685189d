"""Offset continuity of the input partitions: every offset is processed once, in order.

Why this exists: after a table recovery, faust-streaming 0.15 resumes the stream partitions
*before* it seeks them to their committed offsets (``Recovery.on_recovery_completed``).
Records fetched in between are handed to the stream, then dropped when flow control clears
the stream buffers, and the consumer's gap bookkeeping (``Consumer._add_gap``) marks the
skipped offsets as acknowledged, so the next commit moves past commands that were never
processed.  Seen here: after a SIGKILL and restart, about twenty commands of one partition
were never answered and never retried.

The guard: per partition, the next offset the agent must see (from the committed offset
after each assignment, then from every processed record).  A record past it means a hole:
the agent reads the missing range straight from the broker, processes it, and acknowledges
those offsets itself before the record that revealed the hole.  Faust's gap filling is
switched off (:func:`disable_gap_fill`), so no offset is ever committed unprocessed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class ContinuityTracker:
    """Next expected offset per partition; pure bookkeeping, no I/O."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def knows(self, partition: int) -> bool:
        return partition in self._next

    def expected(self, partition: int) -> int | None:
        """The next offset the agent must process on ``partition`` (None if untracked)."""
        return self._next.get(partition)

    def expect(self, partition: int, next_offset: int) -> None:
        """Start tracking ``partition`` at ``next_offset`` (its committed offset)."""
        self._next[partition] = max(0, next_offset)

    def hole(self, partition: int, offset: int) -> tuple[int, int] | None:
        """The missing range ``[start, end)`` before ``offset``, or None if there is none."""
        want = self._next.get(partition)
        if want is None or offset <= want:
            return None
        return (want, offset)

    def done(self, partition: int, offset: int) -> None:
        """``offset`` was processed; redeliveries below the mark never move it back."""
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def reset(self) -> None:
        """Forget every partition (on reassignment the committed offsets are the truth)."""
        self._next.clear()


def stalled_partitions(
    expected: dict[int, int], highwater: dict[int, int | None], idle_seconds: float, limit: float
) -> dict[int, int]:
    """Partitions to re-seek: ``{partition: offset}`` where records exist at or past the
    offset the agent needs next while the agent has been idle for ``limit`` seconds.

    The tail variant of the recovery race: records fetched before the seek and dropped by
    the buffer clear leave the consumer's position *past* them, and with no later record
    nothing reveals the hole, so the partition waits forever.  A seek back to the expected
    offset makes the consumer fetch them again (re-deliveries of applied commands are
    skipped by the session's applied offset).
    """
    if idle_seconds < limit:
        return {}
    return {p: want for p, want in expected.items() if (highwater.get(p) or 0) > want}


@dataclass(frozen=True)
class RawRecord:
    """One input record read outside the consumer group."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float
    headers: list[tuple[str, bytes]]


class HoleFetchError(RuntimeError):
    """The broker did not return a missing range in time."""


async def fetch_range(
    bootstrap: str,
    topic: str,
    partition: int,
    start: int,
    end: int,
    timeout: float = 30.0,
    max_fetch_bytes: int = 4 * 1_048_576,
) -> list[RawRecord]:
    """The records of ``topic``/``partition`` with ``start <= offset < end``, in order.

    Offsets without a record (transaction markers, compaction, retention) are simply absent.
    Reads with its own group-less consumer, so the worker's group and positions are untouched.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    if end <= start:
        return []
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=max_fetch_bytes,
        fetch_max_bytes=max_fetch_bytes,
    )
    await consumer.start()
    out: list[RawRecord] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout
        while True:
            if await consumer.position(tp) >= end:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise HoleFetchError(
                    f"{topic}:{partition} offsets {start}..{end - 1}: got {len(out)} records "
                    f"in {timeout:.0f}s, position {await consumer.position(tp)}"
                )
            batch = await consumer.getmany(tp, timeout_ms=int(min(left, 1.0) * 1000))
            for rec in batch.get(tp, []):
                if rec.offset >= end:
                    return out
                if rec.offset >= start:
                    out.append(
                        RawRecord(
                            topic=topic,
                            partition=partition,
                            offset=rec.offset,
                            key=rec.key,
                            value=rec.value,
                            timestamp=rec.timestamp / 1000.0,
                            headers=list(rec.headers or []),
                        )
                    )
    finally:
        await consumer.stop()


def committed_offset(app: Any, tp: Any) -> int:
    """The offset Faust sought ``tp`` to at the last assignment (0 when nothing is committed)."""
    try:
        value = app.consumer._committed_offset.get(tp)
    except Exception:  # consumer not started yet
        value = None
    return int(value) if value is not None else 0


def ack_range(app: Any, topic: str, partition: int, start: int, end: int) -> None:
    """Acknowledge ``[start, end)`` (processed repairs, and offsets that hold no record)."""
    from faust.types import TP, Message

    tp = TP(topic, partition)
    for offset in range(start, end):
        app.consumer.ack(Message(topic, partition, offset, 0.0, 0, [], None, None, None, tp=tp))


_PATCHED = False


def disable_gap_fill() -> None:
    """Stop faust-streaming from treating unseen offsets as acknowledged.

    Faust records a jump in fetched offsets as a "gap" and commits over it; that is how the
    recovery race above loses commands.  With the guard filling holes (and acknowledging
    offsets that hold no record), gap filling is never needed.
    """
    global _PATCHED
    if _PATCHED:
        return
    from faust.transport.consumer import Consumer

    async def _no_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        log.info("offset jump on %s: %s..%s (guard fills it)", tp, offset_from, offset_to)
        await asyncio.sleep(0)

    Consumer._add_gap = _no_gap  # type: ignore[method-assign]
    _PATCHED = True
