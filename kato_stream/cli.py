"""``kato-stream``: create topics, run a worker, publish and consume, run the dev stack.

Every command reads its configuration from :class:`~kato_stream.settings.Settings`
(``KATO_STREAM_*``); the few flags are conveniences that override single settings.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kato_stream import compat
from kato_stream.kafka import client_options, known_options
from kato_stream.settings import Settings, SettingsError, settings_table


def _settings(args: argparse.Namespace) -> Settings:
    from kato_stream import fetch_backoff  # imports aiokafka: only for commands with settings

    s = Settings.from_env()
    fetch_backoff.install_from(s)
    over: dict[str, Any] = {}
    if getattr(args, "bootstrap", None):
        over["kafka_bootstrap"] = args.bootstrap
    if getattr(args, "partitions", None):
        over["partitions"] = args.partitions
    return dataclasses.replace(s, **over) if over else s


# -- topics -------------------------------------------------------------------------------


def cmd_topics(args: argparse.Namespace) -> int:
    from kato_stream.topics import TopicError, create_topics, describe_partitions, topic_specs

    s = _settings(args)
    specs = topic_specs(s)
    opts = client_options(s)
    if args.action == "create":
        try:
            made = asyncio.run(
                create_topics(
                    s.kafka_bootstrap,
                    specs,
                    replication_factor=s.replication_factor,
                    kafka_options=opts,
                )
            )
        except TopicError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for spec in specs:
            print(f"{spec.name}\t{spec.partitions}\t{'created' if spec.name in made else 'exists'}")
        return 0
    have = asyncio.run(
        describe_partitions(s.kafka_bootstrap, [t.name for t in specs], kafka_options=opts)
    )
    bad = 0
    for spec in specs:
        got = have.get(spec.name)
        state = "missing" if got is None else ("ok" if got == spec.partitions else f"has {got}")
        bad += state != "ok"
        print(f"{spec.name}\t{spec.partitions}\t{state}")
    return 1 if bad else 0


# -- worker -------------------------------------------------------------------------------


def run_worker(
    settings: Settings, engine: Any = None, loglevel: str = "warning", vector_factory: Any = None
) -> None:
    """Run one worker in the foreground until SIGINT/SIGTERM (graceful) or SIGKILL."""
    from kato_stream.stream.app import build_worker

    build_worker(settings, engine, vector_factory).run(loglevel)


def cmd_worker(args: argparse.Namespace) -> int:
    run_worker(_settings(args), loglevel=args.loglevel)
    return 0


# -- publish / consume -----------------------------------------------------------------


async def publish_lines(
    bootstrap: str,
    topic: str,
    lines: Sequence[bytes],
    *,
    kafka_options: Mapping[str, Any] | None = None,
) -> int:
    """Publish JSON envelopes, keyed by their ``session_id`` (lines that do not parse: no key).
    ``kafka_options``: :func:`kato_stream.kafka.client_options` (None = those known for
    ``bootstrap``)."""
    from aiokafka import AIOKafkaProducer

    from kato_stream.stream import codecs
    from kato_stream.topics import describe_partitions

    if kafka_options is None:
        kafka_options = known_options(bootstrap)
    if topic not in await describe_partitions(bootstrap, [topic], kafka_options=kafka_options):
        # the broker would auto-create it with one partition, capping parallelism forever
        raise SystemExit(f"topic {topic} does not exist: run `kato-stream topics create` first")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **kafka_options)
    await producer.start()
    n = 0
    try:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            key = None
            try:
                doc = codecs.loads(line)
                if isinstance(doc, dict) and isinstance(doc.get("session_id"), str):
                    key = doc["session_id"].encode("utf-8")
            except ValueError:
                pass
            await producer.send(topic, line, key=key)
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


def cmd_publish(args: argparse.Namespace) -> int:
    s = _settings(args)
    src = open(args.file, "rb") if args.file != "-" else sys.stdin.buffer  # noqa: SIM115
    with src:
        lines = src.read().splitlines()
    n = asyncio.run(
        publish_lines(
            s.kafka_bootstrap,
            args.topic or s.topic("observations"),
            lines,
            kafka_options=client_options(s),
        )
    )
    print(f"published {n} record(s)", file=sys.stderr)
    return 0


async def consume_records(
    bootstrap: str,
    topic: str,
    *,
    count: int | None = None,
    timeout: float = 10.0,
    from_beginning: bool = True,
    isolation_level: str = "read_uncommitted",
    to_end: bool = False,
    kafka_options: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Read records of ``topic`` (every partition, no group) until ``count`` or ``timeout``;
    with ``to_end``, stop early once every partition is read up to its end offset at start.
    ``kafka_options``: :func:`kato_stream.kafka.client_options` (None = those known for
    ``bootstrap``)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    if kafka_options is None:
        kafka_options = known_options(bootstrap)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        isolation_level=isolation_level,
        **kafka_options,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await compat.refresh_metadata(consumer)
            parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            raise SystemExit(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps) if to_end else {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (count is None or len(out) < count):
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                out.extend(msgs)
            if to_end and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                break
    finally:
        await consumer.stop()
    return out


def cmd_consume(args: argparse.Namespace) -> int:
    s = _settings(args)
    recs = asyncio.run(
        consume_records(
            s.kafka_bootstrap,
            args.topic or s.topic("predictions"),
            count=args.count,
            timeout=args.timeout,
            to_end=args.count is None,
            kafka_options=client_options(s),
        )
    )
    for r in recs:
        sys.stdout.buffer.write(r.value + b"\n")
    sys.stdout.flush()
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def cmd_group(args: argparse.Namespace) -> int:
    """Show the worker groups, or evict members: the operator's tool for a stuck group."""
    from kato_stream.stream.group import Member, describe, evict_dead, evict_members
    from kato_stream.stream.persist import persist_group

    s = _settings(args)
    groups = [s.app_id, persist_group(s)]
    opts = client_options(s)

    def show(m: Member, dead: bool) -> str:
        return f"  {m.member_id}  client={m.client_id} host={m.client_host}" + (
            "  (process gone)" if dead else ""
        )

    async def run() -> int:
        from kato_stream.stream.group import provably_dead

        if args.action == "status":
            found = await describe(s.kafka_bootstrap, groups, kafka_options=opts)
            for group, (state, members) in found.items():
                print(f"{group}: {state}, {len(members)} member(s)")
                for m in members:
                    print(show(m, provably_dead(m.client_id)))
            return 0
        if args.action == "evict-dead":
            gone = await evict_dead(s.kafka_bootstrap, groups, kafka_options=opts)
            for m in gone:
                print(f"evicted {m.member_id} of {m.group}")
            print(f"{len(gone)} dead member(s) evicted")
            return 0
        # evict: the given members, or every member (they rejoin if alive: one rebalance)
        total = 0
        for group in groups:
            done = await evict_members(
                s.kafka_bootstrap, group, args.member or None, kafka_options=opts
            )
            for mid in done:
                print(f"evicted {mid} of {group}")
            total += len(done)
        print(f"{total} member(s) evicted")
        return 0

    return asyncio.run(run())


def cmd_gateway(args: argparse.Namespace) -> int:
    from kato_stream.gateway.server import run_standalone

    run_standalone(_settings(args), args.host, args.port)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    import os

    from kato_stream.dev import run_dev

    s = Settings.from_env()
    if "KATO_STREAM_REDIS_URL" not in os.environ:
        # the embedded stack starts its own Redis: keep clear of a system one on 6379
        s = dataclasses.replace(s, redis_url="redis://127.0.0.1:16379/0")
    if args.data_dir:
        s = dataclasses.replace(s, data_dir=args.data_dir)
    try:
        return asyncio.run(
            run_dev(
                s,
                host=args.host,
                port=args.port,
                sample=not args.no_sample,
                exit_after_sample=args.exit_after_sample,
                timeout=args.timeout,
            )
        )
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kato-stream", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--bootstrap", help="Kafka bootstrap (overrides KATO_STREAM_KAFKA_BOOTSTRAP)"
        )

    t = sub.add_parser("topics", help="create or check the topics (topics/topics.json)")
    t.add_argument("action", choices=("create", "check"))
    t.add_argument("--partitions", type=int, help="override KATO_STREAM_PARTITIONS")
    common(t)
    t.set_defaults(func=cmd_topics)

    w = sub.add_parser("worker", help="run a stream worker in the foreground")
    w.add_argument("--loglevel", default="warning")
    common(w)
    w.set_defaults(func=cmd_worker)

    pub = sub.add_parser(
        "publish", help="publish JSON-lines command envelopes (keyed by session_id)"
    )
    pub.add_argument("file", nargs="?", default="-", help="JSON-lines file, - for stdin")
    pub.add_argument("--topic", help="default: <prefix>.observations")
    common(pub)
    pub.set_defaults(func=cmd_publish)

    con = sub.add_parser("consume", help="print a topic's record values (JSON lines)")
    con.add_argument("--topic", help="default: <prefix>.predictions")
    con.add_argument("--count", type=int)
    con.add_argument("--timeout", type=float, default=5.0)
    common(con)
    con.set_defaults(func=cmd_consume)

    st = sub.add_parser("settings", help="print every setting (env var, default, doc)")
    st.set_defaults(func=cmd_settings)

    gr = sub.add_parser(
        "group",
        help="the workers' consumer groups: status, evict-dead (members whose process on "
        "this host is gone), evict (the given --member ids, or all: live ones rejoin)",
    )
    gr.add_argument("action", choices=("status", "evict-dead", "evict"))
    gr.add_argument("--member", action="append", help="member id to evict (repeatable)")
    common(gr)
    gr.set_defaults(func=cmd_group)

    g = sub.add_parser("gateway", help="serve KATO's REST API (the KATO-compatible gateway)")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=8000)
    common(g)
    g.set_defaults(func=cmd_gateway)

    d = sub.add_parser(
        "dev",
        help="embedded stack (broker, redis, chdb, qdrant) + topics + worker + gateway, "
        "with sample data streaming",
    )
    d.add_argument("--host", default="127.0.0.1", help="gateway address")
    d.add_argument("--port", type=int, default=8000, help="gateway port (0 = no gateway)")
    d.add_argument("--data-dir", help="override KATO_STREAM_DATA_DIR")
    d.add_argument("--no-sample", action="store_true", help="do not stream the sample data")
    d.add_argument(
        "--exit-after-sample", action="store_true", help="stop once the sample is answered"
    )
    d.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for answers")
    d.set_defaults(func=cmd_dev)

    from kato_stream.tools import archive, loadgen, replay  # light: aiokafka is imported on use

    for name, mod, text in (
        ("archive", archive, "dump a topic range (offsets or time) to JSON lines"),
        ("replay", replay, "re-publish a topic range or an archive (backfill, fresh node)"),
        ("loadgen", loadgen, "load the stack and report throughput and latency percentiles"),
    ):
        sp = sub.add_parser(name, help=text)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:  # a bad or incomplete setting: say which, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
