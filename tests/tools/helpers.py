"""Broker helpers for the tools' tests: create topics, produce envelopes, read a topic back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from kato_stream.topics import TopicSpec, create_topics


async def make_topics(bootstrap: str, *specs: tuple[str, int]) -> None:
    await create_topics(bootstrap, [TopicSpec(name=n, partitions=p) for n, p in specs])


def env(
    op: str, session: str, node: str = "n1", msg_id: str | None = None, **payload: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {"op": op, "session_id": session, "node_id": node, "payload": payload}
    if msg_id is not None:
        doc["msg_id"] = msg_id
    return doc


async def produce(
    bootstrap: str,
    topic: str,
    docs: list[dict[str, Any] | bytes],
    *,
    timestamps: list[int] | None = None,
    partition: int | None = None,
) -> list[tuple[int, int]]:
    """Publish ``docs`` keyed by session id, in order; returns (partition, offset) of each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    try:
        futs = []
        for i, d in enumerate(docs):
            if isinstance(d, bytes):
                value, key = d, None
            else:
                value, key = orjson.dumps(d), d["session_id"].encode()
            ts = timestamps[i] if timestamps else None
            futs.append(
                await producer.send(topic, value, key=key, partition=partition, timestamp_ms=ts)
            )
        metas = await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metas]


async def read_all(
    bootstrap: str, topic: str, *, expect: int | None = None, timeout: float = 15.0
) -> list[Any]:
    """Every record of ``topic`` (all partitions, from the beginning), per partition in order.

    With ``expect``, waits until that many arrived (or ``timeout``); without, reads to the end
    offsets seen at start.
    """
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            await c._client.force_metadata_update()  # noqa: SLF001
            parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        goal = expect if expect is not None else sum(ends.values())
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < goal and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=200)
            for msgs in batch.values():
                out.extend(msgs)
        return out
    finally:
        await c.stop()


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]
