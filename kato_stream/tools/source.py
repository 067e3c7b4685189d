"""Read a bounded range of a topic: by offsets or by time, per partition.

The range is fixed when reading starts (end offsets are snapshotted), so replaying a topic into
itself terminates instead of chasing its own output.  Offsets are ``[start, end)`` like Kafka's
own positions; times are ``[since, until)`` resolved with ListOffsets-by-time
(``offsets_for_times``), which gives the first offset whose timestamp is at or after the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kato_stream.kafka import known_options
from kato_stream.tools.common import SourceRecord


@dataclass(frozen=True)
class RangeSpec:
    """What to read.  ``partitions`` None = all; per-partition ``offsets`` override the rest."""

    topic: str
    partitions: tuple[int, ...] | None = None
    start_offset: int | None = None
    end_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    offsets: tuple[tuple[int, int | None, int | None], ...] = ()  # (partition, start, end)


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int
    end: int  # exclusive

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def parse_partition_range(text: str) -> tuple[int, int | None, int | None]:
    """``P``, ``P:START``, ``P:START:END`` or ``P:START-END`` (END exclusive, empty = open)."""
    head, _, rest = text.partition(":")
    start, _, end = rest.partition("-") if "-" in rest else rest.partition(":")
    try:
        return int(head), int(start) if start else None, int(end) if end else None
    except ValueError:
        raise ValueError(f"bad partition range {text!r}: use P:START:END") from None


def _consumer(bootstrap: str, kafka_options: Mapping[str, Any] | None = None) -> Any:
    from aiokafka import AIOKafkaConsumer

    if kafka_options is None:
        kafka_options = known_options(bootstrap)
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **kafka_options,
    )


async def _partitions(c: Any, topic: str) -> list[int]:
    parts = c.partitions_for_topic(topic)
    if not parts:
        await c._client.force_metadata_update()  # noqa: SLF001
        parts = c.partitions_for_topic(topic)
    if not parts:
        raise ValueError(f"topic {topic!r} does not exist (or has no partitions)")
    return sorted(parts)


async def resolve(c: Any, spec: RangeSpec) -> list[PartitionRange]:
    """Turn ``spec`` into concrete ``[start, end)`` offsets per partition, clamped to what exists."""
    from aiokafka import TopicPartition

    existing = await _partitions(c, spec.topic)
    explicit = {p: (s, e) for p, s, e in spec.offsets}
    wanted = sorted(explicit) if explicit else list(spec.partitions or existing)
    missing = [p for p in wanted if p not in existing]
    if missing:
        raise ValueError(f"topic {spec.topic!r} has no partition(s) {missing} (has {existing})")
    tps = [TopicPartition(spec.topic, p) for p in wanted]
    if not tps:
        return []
    begin = await c.beginning_offsets(tps)
    end = await c.end_offsets(tps)
    since = until = None
    if spec.since_ms is not None:
        since = await c.offsets_for_times({tp: spec.since_ms for tp in tps})
    if spec.until_ms is not None:
        until = await c.offsets_for_times({tp: spec.until_ms for tp in tps})
    out = []
    for tp in tps:
        lo, hi = begin[tp], end[tp]
        start, stop = explicit.get(tp.partition, (spec.start_offset, spec.end_offset))
        if since is not None:
            hit = since[tp]
            start = max(start or 0, hit.offset if hit is not None else hi)
        if until is not None:
            hit = until[tp]
            stop = min(stop if stop is not None else hi, hit.offset if hit is not None else hi)
        s = min(max(lo, start if start is not None else lo), hi)
        e = min(hi, stop if stop is not None else hi)
        out.append(PartitionRange(tp.partition, s, max(s, e)))
    return out


async def read_range(
    bootstrap: str,
    spec: RangeSpec,
    *,
    idle_timeout: float = 30.0,
    on_resolved: Callable[[list[PartitionRange]], None] | None = None,
    kafka_options: Mapping[str, Any] | None = None,
) -> AsyncGenerator[SourceRecord, None]:
    """Yield every record of the range, each partition in offset order.

    Partitions are read together (getmany); the order *between* partitions is not defined, as
    in Kafka itself.  ``on_resolved(ranges)`` is called once the range is known (progress total).
    Raises ``TimeoutError`` when no record arrives for ``idle_timeout`` seconds while some
    partition has not reached its end (a broker that went away; never hangs forever).
    ``kafka_options``: :func:`kato_stream.kafka.client_options` (None = those known for
    ``bootstrap``).
    """
    from aiokafka import TopicPartition

    consumer = _consumer(bootstrap, kafka_options)
    await consumer.start()
    try:
        ranges = await resolve(consumer, spec)
        if on_resolved is not None:
            on_resolved(ranges)
        todo = {TopicPartition(spec.topic, r.partition): r for r in ranges if r.size > 0}
        if not todo:
            return
        consumer.assign(list(todo))
        for tp, r in todo.items():
            consumer.seek(tp, r.start)
        last = time.monotonic()
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=500)
            for tp in sorted(batch, key=lambda t: t.partition):
                pr = todo.get(tp)
                if pr is None:
                    continue
                for m in batch[tp]:
                    if m.offset >= pr.end:
                        break
                    yield SourceRecord(
                        topic=m.topic,
                        partition=m.partition,
                        offset=m.offset,
                        timestamp=m.timestamp,
                        key=m.key,
                        value=m.value,
                        headers=tuple((k, bytes(v)) for k, v in (m.headers or ())),
                    )
            if batch:
                last = time.monotonic()
            for tp in list(todo):
                # position() also covers offsets that hold no record (compaction, txn markers).
                if await consumer.position(tp) >= todo[tp].end:
                    del todo[tp]
            if todo:
                consumer.pause(*[tp for tp in consumer.assignment() if tp not in todo])
                if time.monotonic() - last > idle_timeout:
                    left = {tp.partition: todo[tp].end for tp in todo}
                    raise TimeoutError(
                        f"no records for {idle_timeout}s; partitions left (end offsets): {left}"
                    )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)


def ranges_total(ranges: Iterable[PartitionRange]) -> int:
    return sum(r.size for r in ranges)


def add_range_arguments(p: Any, *, topic_help: str) -> None:
    """The range flags shared by ``archive`` and ``replay`` (argparse)."""
    p.add_argument("--topic", help=topic_help)
    p.add_argument(
        "--partition", type=int, action="append", help="partition to read (repeat; default all)"
    )
    p.add_argument(
        "--start-offset", type=int, help="first offset to read, in every selected partition"
    )
    p.add_argument(
        "--end-offset", type=int, help="offset to stop before (exclusive), in every partition"
    )
    p.add_argument(
        "--range",
        action="append",
        metavar="P:START:END",
        help="explicit offsets for one partition (repeat; END exclusive, empty = open)",
    )
    p.add_argument("--since", help="first record time, epoch ms or ISO-8601 (naive = UTC)")
    p.add_argument("--until", help="stop before this time, epoch ms or ISO-8601 (exclusive)")


def range_spec(args: Any, topic: str) -> RangeSpec:
    """A :class:`RangeSpec` from the flags of :func:`add_range_arguments`."""
    from kato_stream.tools.common import parse_time

    return RangeSpec(
        topic=topic,
        partitions=tuple(args.partition) if args.partition else None,
        start_offset=args.start_offset,
        end_offset=args.end_offset,
        since_ms=parse_time(args.since) if args.since else None,
        until_ms=parse_time(args.until) if args.until else None,
        offsets=tuple(parse_partition_range(r) for r in args.range or ()),
    )
