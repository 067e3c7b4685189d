"""Read a bounded range of a topic: by offsets or by time, per partition.

The range is fixed when reading starts (end offsets are snapshotted), so replaying a topic into
itself terminates instead of chasing its own output.  Offsets are ``[start, end)`` like Kafka's
own positions; times are ``[since, until)`` resolved with ListOffsets-by-time
(``offsets_for_times``), which gives the first offset whose timestamp is at or after the time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# the range reader lives in kato_stream/kafka.py (one reader for the tools and the worker)
from kato_stream.kafka import PartitionRange as PartitionRange
from kato_stream.kafka import RangeSpec as RangeSpec
from kato_stream.kafka import read_range as read_range
from kato_stream.kafka import resolve as resolve


def parse_partition_range(text: str) -> tuple[int, int | None, int | None]:
    """``P``, ``P:START``, ``P:START:END`` or ``P:START-END`` (END exclusive, empty = open)."""
    head, _, rest = text.partition(":")
    start, _, end = rest.partition("-") if "-" in rest else rest.partition(":")
    try:
        return int(head), int(start) if start else None, int(end) if end else None
    except ValueError:
        raise ValueError(f"bad partition range {text!r}: use P:START:END") from None


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
