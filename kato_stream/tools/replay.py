"""``kato-stream replay``: re-publish a range of a stream (or an archive) to backfill a node.

Why each rule exists:

* **Stable identity.** A replayed envelope keeps its original's identity: its own msg_id
  (the learn id is ``"{session}/{msg_id}"``), or, when it had none, an ``origin`` field holding
  the original's ``topic:partition:offset``, which the worker uses in place of the replay's
  own coordinates (the learn id of an id-less command is its coordinates).  A knowledge base
  applies a learn id once, so a replay into the node that processed the original, or a second
  replay of the same range, counts nothing twice.  ``--id-prefix`` (empty by default) prefixes
  both kinds: a new prefix starts a new generation (see docs/replay.md).
* **Order.** Records are published in source order per source partition, keyed by session id,
  and aiokafka keeps one batch in flight per partition: the same session always lands on one
  partition, in order.  ``--partitioning source`` keeps the source partition number instead
  of hashing the key (for topics written by a client with another partitioner).
* **Fresh node.** ``--to-node`` rewrites ``node_id`` and maps every session id through
  ``--session-map`` (default ``{session}@{node}``), so replayed sessions never collide with the
  originals (a session belongs to one node) and the mapping is the same on every run.
* **Bounded.** The range's end offsets are fixed at start, so replaying a topic into itself ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from kato_stream.kafka import client_options, known_options
from kato_stream.stream.envelope import FORWARDED_HEADER
from kato_stream.stream.expiry import is_tick
from kato_stream.tools.common import RateLimiter, SourceRecord, dumps, progress
from kato_stream.tools.source import (
    PartitionRange,
    add_range_arguments,
    range_spec,
    ranges_total,
    read_range,
)

DEFAULT_SESSION_MAP = "{session}@{node}"


@dataclass(frozen=True)
class ReplayOptions:
    """Filters and rewrites applied to every source record."""

    session: str | None = None  # keep only this (original) session id
    node: str | None = None  # keep only this (original) node id
    exclude_ops: frozenset[str] = frozenset()
    to_node: str | None = None
    session_map: str | None = None  # template; None = keep ids unless to_node is set
    id_prefix: str = ""
    partitioning: str = "key"  # or "source"

    def mapping(self) -> str | None:
        if self.session_map is not None:
            return self.session_map
        return DEFAULT_SESSION_MAP if self.to_node is not None else None


@dataclass
class ReplaySummary:
    read: int = 0
    published: int = 0
    skipped_filter: int = 0
    skipped_invalid: int = 0
    skipped_derived: int = 0
    """Records a worker made, not a client: ticks and forward_to observes (redone anyway)."""
    failed: int = 0
    duration_s: float = 0.0
    rate_msgs_s: float = 0.0
    target_topic: str = ""
    ranges: dict[str, list[int]] = field(default_factory=dict)

    def text(self) -> str:
        return (
            f"read {self.read}, published {self.published} to {self.target_topic}, "
            f"skipped {self.skipped_filter} by filter, {self.skipped_invalid} invalid and "
            f"{self.skipped_derived} made by workers, "
            f"failed {self.failed}, in {self.duration_s:.2f}s ({self.rate_msgs_s:.0f} msg/s)"
        )


class Skip(Exception):
    """Why a record is not replayed: ``filter``, ``invalid`` or ``derived`` (a worker's tick or
    forward, docs/operations.md and docs/hierarchy.md)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def map_session(template: str, session: str, node: str, src_node: str) -> str:
    """The deterministic new session id (``{session}``, ``{node}``, ``{src_node}`` placeholders)."""
    return template.format(session=session, node=node, src_node=src_node)


def rewrite(rec: SourceRecord, opts: ReplayOptions) -> tuple[bytes, bytes]:
    """(key, value) to publish for ``rec``, or raise :class:`Skip`."""
    if is_tick(rec.key, rec.value) or any(k == FORWARDED_HEADER for k, _ in rec.headers):
        raise Skip("derived")
    try:
        env = orjson.loads(rec.value) if rec.value is not None else None
    except orjson.JSONDecodeError:
        raise Skip("invalid") from None
    if not isinstance(env, dict):
        raise Skip("invalid")
    sid, nid = env.get("session_id"), env.get("node_id")
    if not (
        isinstance(sid, str)
        and sid
        and isinstance(nid, str)
        and nid
        and isinstance(env.get("op"), str)
    ):
        raise Skip("invalid")
    if (opts.session is not None and sid != opts.session) or (
        opts.node is not None and nid != opts.node
    ):
        raise Skip("filter")
    if env["op"] in opts.exclude_ops:
        raise Skip("filter")
    mid, origin = env.get("msg_id"), env.get("origin")
    if isinstance(mid, str) and mid:
        env["msg_id"] = f"{opts.id_prefix}{mid}"
    else:
        # the original's identity was its coordinates (or its own origin, if it was a replay)
        base = origin if isinstance(origin, str) and origin else rec.identity
        env["origin"] = f"{opts.id_prefix}{base}"
    new_node = opts.to_node or nid
    template = opts.mapping()
    if template is not None:
        env["session_id"] = map_session(template, sid, new_node, nid)
    env["node_id"] = new_node
    return env["session_id"].encode("utf-8"), dumps(env)


async def _aiter(records: Iterable[SourceRecord]) -> AsyncGenerator[SourceRecord, None]:
    for r in records:
        yield r


async def replay(
    records: AsyncGenerator[SourceRecord, None] | Iterable[SourceRecord],
    bootstrap: str,
    topic: str,
    opts: ReplayOptions,
    *,
    rate: float | None = None,
    show_progress: bool = False,
    total: int | None = None,
    ranges: list[PartitionRange] | None = None,
    kafka_options: Mapping[str, Any] | None = None,
) -> ReplaySummary:
    """Publish the rewritten ``records`` to ``topic``; returns once every send is acknowledged.
    ``kafka_options``: :func:`kato_stream.kafka.client_options` (None = those known for
    ``bootstrap``)."""
    from aiokafka import AIOKafkaProducer

    if kafka_options is None:
        kafka_options = known_options(bootstrap)
    source = records if isinstance(records, AsyncGenerator) else _aiter(records)
    summary = ReplaySummary(target_topic=topic)
    limiter = RateLimiter(rate)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        acks="all",
        enable_idempotence=True,
        **kafka_options,
    )
    bar = progress(total, f"replay -> {topic}", show_progress)
    pending: list[asyncio.Future[Any]] = []

    async def settle() -> None:
        for res in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(res, BaseException):
                summary.failed += 1
            else:
                summary.published += 1
        pending.clear()

    t0 = time.monotonic()
    await producer.start()
    try:
        async with contextlib.aclosing(source):  # stops the source's consumer on any error
            async for rec in source:
                summary.read += 1
                if ranges is not None and bar.total is None:
                    bar.total = ranges_total(ranges)
                bar.update(1)
                try:
                    key, value = rewrite(rec, opts)
                except Skip as skip:
                    if skip.reason == "filter":
                        summary.skipped_filter += 1
                    elif skip.reason == "derived":
                        summary.skipped_derived += 1
                    else:
                        summary.skipped_invalid += 1
                    continue
                await limiter.wait()
                part = rec.partition if opts.partitioning == "source" else None
                pending.append(await producer.send(topic, value, key=key, partition=part))
                if len(pending) >= 2000:
                    await settle()
        await producer.flush()
        await settle()
    finally:
        bar.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 30)
    summary.duration_s = round(time.monotonic() - t0, 3)
    summary.rate_msgs_s = (
        round(summary.published / summary.duration_s, 1) if summary.duration_s else 0.0
    )
    if ranges is not None:
        summary.ranges = {str(r.partition): [r.start, r.end] for r in ranges}
    return summary


async def replay_topic(
    bootstrap: str,
    spec: Any,
    target_bootstrap: str,
    target_topic: str,
    opts: ReplayOptions,
    *,
    rate: float | None = None,
    show_progress: bool = False,
    kafka_options: Mapping[str, Any] | None = None,
) -> ReplaySummary:
    """Replay the range ``spec`` (a RangeSpec) of a topic into ``target_topic``
    (``kafka_options``: the security options of both clusters, see :func:`replay`)."""
    ranges: list[PartitionRange] = []
    records = read_range(bootstrap, spec, on_resolved=ranges.extend, kafka_options=kafka_options)
    return await replay(
        records,
        target_bootstrap,
        target_topic,
        opts,
        rate=rate,
        show_progress=show_progress,
        ranges=ranges,
        kafka_options=kafka_options,
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="Kafka bootstrap (default: KATO_STREAM_KAFKA_BOOTSTRAP)")
    add_range_arguments(p, topic_help="source topic (default: <prefix>.observations)")
    p.add_argument(
        "--from-file",
        metavar="JSONL",
        help="replay an archive (or bare envelopes) instead of a topic",
    )
    p.add_argument("--to-topic", help="target topic (default: <prefix>.observations)")
    p.add_argument("--to-bootstrap", help="target cluster (default: the source's)")
    p.add_argument("--session", help="only this session id")
    p.add_argument("--node", help="only this node id")
    p.add_argument(
        "--exclude-op", action="append", default=[], help="drop commands of this op (repeat)"
    )
    p.add_argument("--to-node", help="rewrite node_id (a fresh node) and map session ids")
    p.add_argument(
        "--session-map",
        help=f"new session id template (default with --to-node: {DEFAULT_SESSION_MAP!r})",
    )
    p.add_argument(
        "--id-prefix",
        default="",
        help="prefix of every replayed identity (msg_id, or origin when there is none); "
        "empty (default) = the originals' identities, so nothing already learned counts twice; "
        "a new prefix = a new generation",
    )
    p.add_argument("--partitioning", choices=("key", "source"), default="key")
    p.add_argument("--rate", type=float, default=0.0, help="messages per second (0 = unlimited)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    from kato_stream.settings import Settings
    from kato_stream.tools.archive import read_archive

    s = Settings.from_env()
    bootstrap = args.bootstrap or s.kafka_bootstrap
    target = args.to_topic or s.topic("observations")
    if args.session_map is not None and "{session}" not in args.session_map:
        print("--session-map must contain {session} (else sessions would merge)", file=sys.stderr)
        return 2
    opts = ReplayOptions(
        session=args.session,
        node=args.node,
        exclude_ops=frozenset(args.exclude_op),
        to_node=args.to_node,
        session_map=args.session_map,
        id_prefix=args.id_prefix,
        partitioning=args.partitioning,
    )
    show = not args.no_progress
    out_bootstrap = args.to_bootstrap or bootstrap
    security = client_options(s)  # the same security settings for source and target
    if args.from_file:
        coro = replay(
            read_archive(args.from_file),
            out_bootstrap,
            target,
            opts,
            rate=args.rate,
            show_progress=show,
            kafka_options=security,
        )
    else:
        spec = range_spec(args, args.topic or s.topic("observations"))
        coro = replay_topic(
            bootstrap,
            spec,
            out_bootstrap,
            target,
            opts,
            rate=args.rate,
            show_progress=show,
            kafka_options=security,
        )
    try:
        summary = asyncio.run(coro)
    except (ValueError, TimeoutError, OSError) as exc:
        print(f"replay failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(asdict(summary)).decode())
    else:
        print(summary.text(), file=sys.stderr)
    return 1 if summary.failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kato-stream replay", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
