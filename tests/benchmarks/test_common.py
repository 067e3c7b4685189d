"""benchmarks/_common.py's broker helper, on the real embedded broker."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks._common import trim_topics
from tests.tools.helpers import make_topics, produce


async def _offsets(bootstrap: str, topic: str, n: int) -> tuple[list[int], list[int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(n)]
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return [starts[tp] for tp in tps], [ends[tp] for tp in tps]
    finally:
        await consumer.stop()


@pytest.mark.stack
@pytest.mark.timeout(60)
async def test_trim_topics_deletes_every_record_up_to_the_end(
    kafka_bootstrap: str, unique_id: str
) -> None:
    """After a trim each partition starts at its end; what is produced later stays."""
    a, b, empty = f"{unique_id}.a", f"{unique_id}.b", f"{unique_id}.empty"
    await make_topics(kafka_bootstrap, (a, 2), (b, 1), (empty, 1))
    await produce(kafka_bootstrap, a, [b"x" * 1000] * 5, partition=0)
    await produce(kafka_bootstrap, a, [b"y"] * 2, partition=1)
    await produce(kafka_bootstrap, b, [b"z"] * 3)

    assert await trim_topics(kafka_bootstrap, [a, b, empty, f"{unique_id}.missing"]) == 10

    assert await _offsets(kafka_bootstrap, a, 2) == ([5, 2], [5, 2])
    assert await _offsets(kafka_bootstrap, b, 1) == ([3], [3])
    assert await trim_topics(kafka_bootstrap, [a, b]) == 0  # nothing left to delete
    await produce(kafka_bootstrap, b, [b"later"])
    assert await _offsets(kafka_bootstrap, b, 1) == ([3], [4])
