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

The same race at the end of a partition leaves records that no later record reveals.  Seen on
``kato-stream dev`` restarts (issue 14), where the sample is published while the worker
recovers its table: aiokafka fetches the new records of an input partition that Faust keeps
paused (only in Faust: its active set), Faust's ``resume_partitions`` makes the partition
active and its fetcher hands them to the stream, then ``perform_seek`` asks aiokafka to seek
every partition to its committed offset, which aiokafka's ``seek_to_committed`` does only ``if
offset and offset > 0``: a partition that never had a commit (``committed()`` gives None for
the broker's -1) stays where the fetcher is, past the records; Faust forgets its read offset,
and ``flow_control.resume()`` then empties the stream buffers (``clear_on_resume``).  Those
records were never delivered again (aiokafka position 27 = highwater, nothing buffered, Faust's
read offset None, partition active): 2 of 7 restarts with the backstop's seek switched off.
:func:`reseek_uncommitted` fixes that at the source: after Faust's seek, the input partitions
without a committed offset are sought to their beginning (where aiokafka started them:
``auto_offset_reset=earliest``), so the fetcher reads the dropped records again.  (A partition
with a commit is sought back by Faust itself; a record delivered in between still shows up as
a hole, filled as above.)

What is left is a backstop, :class:`StallWatch`: an input partition whose records have waited
past the offset the agent needs next, without that offset moving, for a while and with the
agent idle, is sought back to it.  Before, the agent-wide idle time alone decided (idle 3 s and
a highwater above the expected offset), so the first records after any quiet spell looked
stalled for the moment between the fetch that brought them (and raised the highwater) and the
agent's batch.  On a fresh ``dev`` start that moment lasts 0.2-0.5 s (the worker is still
starting its followers, and the idle clock has run since start-up): 2 of 9 fresh starts logged
``partition kato.observations:N idle at offset 0 with records up to 27: seeking back``, for
records the agent processed anyway (with the seek switched off, all 27 were answered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kato_stream.compat import (
    after_faust_perform_seek,
    faust_committed_offset,
    faust_forget_read_offset,
    faust_replace_gap_fill,
    faust_seek_to_beginning,
)
from kato_stream.kafka import PartitionRange, RangeSpec, SourceRecord, read_range

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


class StallWatch:
    """Input partitions whose records wait, unprocessed, at the same offset: pure bookkeeping.

    :meth:`check` runs on the agent's stall timer while the agent is idle; the timer calls
    :meth:`clear` whenever it is not (busy, rebalancing, not ready), so an entry always covers
    an unbroken run of idle checks.  A partition is stalled once records past the offset the
    agent needs next have been seen for ``limit`` seconds of that run with that offset
    unchanged: records that are merely on their way to the agent (fetched, highwater raised,
    not yet in a batch) are processed long before.
    """

    def __init__(self) -> None:
        self._since: dict[int, tuple[int, float]] = {}
        self._seeks: dict[int, int] = {}
        self._generation: Any = None

    def clear(self) -> None:
        """Forget the waiting partitions (the agent was busy, or the group rebalanced)."""
        self._since.clear()

    def new_generation(self, generation: Any) -> None:
        """A new assignment: forget everything, re-seek counts included."""
        if generation != self._generation:
            self._generation = generation
            self._since.clear()
            self._seeks.clear()

    def seeks(self, partition: int) -> int:
        """Re-seeks of ``partition`` since the assignment."""
        return self._seeks.get(partition, 0)

    def check(
        self,
        expected: dict[int, int],
        highwater: dict[int, int | None],
        now: float,
        limit: float,
    ) -> dict[int, int]:
        """``{partition: offset}`` to seek back to: records at or past ``offset`` have waited
        ``limit`` seconds with the agent idle and ``offset`` unchanged.  A partition returned
        here is counted (:meth:`seeks`) and gets ``limit`` again before the next re-seek."""
        waiting = {p: want for p, want in expected.items() if (highwater.get(p) or 0) > want}
        for p in list(self._since):
            if p not in waiting:
                del self._since[p]
        stuck: dict[int, int] = {}
        for p, want in waiting.items():
            seen = self._since.get(p)
            if seen is None or seen[0] != want:
                self._since[p] = (want, now)
            elif now - seen[1] >= limit:
                stuck[p] = want
                self._since[p] = (want, now)
                self._seeks[p] = self._seeks.get(p, 0) + 1
        return stuck


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
    kafka_options: Mapping[str, Any] | None = None,
) -> list[SourceRecord]:
    """The records of ``topic``/``partition`` with ``start <= offset < end``, in order.

    Offsets without a record (transaction markers, compaction, retention) are simply absent.
    Reads with the tools' range reader (:func:`kato_stream.kafka.read_range`: a group-less
    consumer, so the worker's group and positions are untouched).  ``kafka_options``:
    :func:`kato_stream.kafka.client_options`; None = those known for ``bootstrap``.
    Raises :class:`HoleFetchError` when the range is not read within ``timeout``."""
    if end <= start:
        return []
    spec = RangeSpec(topic=topic, offsets=((partition, start, end),))
    out: list[SourceRecord] = []
    resolved: list[PartitionRange] = []
    try:
        async with asyncio.timeout(timeout):
            async for rec in read_range(
                bootstrap,
                spec,
                idle_timeout=timeout,
                on_resolved=resolved.extend,
                kafka_options=kafka_options,
                max_fetch_bytes=max_fetch_bytes,
            ):
                out.append(rec)
    except TimeoutError:
        raise HoleFetchError(
            f"{topic}:{partition} offsets {start}..{end - 1}: got {len(out)} records "
            f"in {timeout:.0f}s"
        ) from None
    if resolved and resolved[0].end < end:  # the reader stops at the log's end
        raise HoleFetchError(
            f"{topic}:{partition} offsets {start}..{end - 1}: got {len(out)} records; "
            f"the log ends at offset {resolved[0].end}"
        )
    return out


def assigned_partitions(app: Any, topic: str) -> set[int]:
    """The partitions of ``topic`` assigned to the app's consumer now (none before it started)."""
    try:
        assignment = app.consumer.assignment()
    except Exception:  # consumer not started yet
        return set()
    return {tp.partition for tp in assignment if tp.topic == topic}


def committed_offset(app: Any, tp: Any) -> int:
    """The offset Faust sought ``tp`` to at the last assignment (0 when nothing is committed)."""
    try:
        value = faust_committed_offset(app.consumer, tp)
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

    async def _no_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        log.info("offset jump on %s: %s..%s (guard fills it)", tp, offset_from, offset_to)
        await asyncio.sleep(0)

    faust_replace_gap_fill(_no_gap)
    _PATCHED = True


_RESEEK_TOPICS: set[str] = set()


async def _seek_uncommitted(consumer: Any) -> None:
    """After Faust's seek to the committed offsets: seek the input partitions that have none
    to their beginning (the records fetched before the seek were dropped with the buffers)."""
    tps = sorted(
        (
            tp
            for tp in consumer.assignment()
            if tp.topic in _RESEEK_TOPICS and faust_committed_offset(consumer, tp) is None
        ),
        key=lambda tp: (tp.topic, tp.partition),
    )
    if not tps:
        return
    await faust_seek_to_beginning(consumer, tps)
    for tp in tps:
        faust_forget_read_offset(consumer, tp)
    log.info(
        "no committed offset for %s: sought to the beginning after Faust's seek",
        ", ".join(f"{tp.topic}:{tp.partition}" for tp in tps),
    )


def reseek_uncommitted(topics: set[str] | list[str] | tuple[str, ...]) -> None:
    """Seek the partitions of ``topics`` that have no committed offset to their beginning each
    time Faust seeks its partitions to their committed offsets (module docstring).

    Process-wide and idempotent; the topics accumulate.  Only for topics read from their
    beginning when nothing is committed (the worker's ``auto_offset_reset`` is earliest)."""
    _RESEEK_TOPICS.update(topics)
    after_faust_perform_seek(_seek_uncommitted)
