"""The pause after an empty fetch (fetch_backoff.py), on the real embedded broker.

noida-db answers an empty fetch at once, so an idle consumer re-fetches in a tight loop;
with the pause it fetches at most about once per pause, and records still arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Iterator

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer import fetcher

from kato_stream import fetch_backoff
from kato_stream.stream.app import QuietWorker
from kato_stream.topics import TopicSpec, create_topics

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def counting_fetches() -> Iterator[Counter[int]]:
    """Fetch requests sent while inside, per fetcher (``id`` of the consumer's ``_fetcher``).

    Wraps aiokafka's fetch step on top of whatever is installed (the pause or not), so the
    count is what the broker sees."""
    counts: Counter[int] = Counter()
    inner = fetcher.Fetcher._proc_fetch_request

    async def counting(self, *a, **k):  # type: ignore[no-untyped-def]
        counts[id(self)] += 1
        return await inner(self, *a, **k)

    fetcher.Fetcher._proc_fetch_request = counting
    try:
        yield counts
    finally:
        fetcher.Fetcher._proc_fetch_request = inner


async def _idle_fetches(bootstrap: str, topic: str, seconds: float) -> tuple[int, bytes]:
    """Fetch requests an idle consumer sends in ``seconds``, then a record sent to it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=500)
    try:
        with counting_fetches() as counts:
            await consumer.start()
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.seek_to_end(TopicPartition(topic, 0))
            await asyncio.sleep(seconds)
        idle = sum(counts.values())
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"wake")
        finally:
            await producer.stop()
        msg = await asyncio.wait_for(consumer.getone(), 10)
        return idle, msg.value
    finally:
        await consumer.stop()


async def test_idle_consumer_fetches_far_less_and_still_reads(kafka_bootstrap: str) -> None:
    topic = f"fb-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, [TopicSpec(topic, 1, {})])
    fetch_backoff.uninstall()
    try:
        tight, v1 = await _idle_fetches(kafka_bootstrap, topic, 1.0)
        fetch_backoff.install(0.05)
        paced, v2 = await _idle_fetches(kafka_bootstrap, topic, 1.0)
    finally:
        fetch_backoff.uninstall()
    assert v1 == v2 == b"wake"
    assert paced <= 30  # about 1 s / 50 ms, with room for the start-up fetches
    assert tight > 5 * paced, (tight, paced)  # noida-db answers empty fetches at once


async def test_pause_is_capped_by_the_consumers_own_fetch_wait(kafka_bootstrap: str) -> None:
    """A consumer that asked for short fetch waits never pauses longer than it asked."""
    topic = f"fb-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, [TopicSpec(topic, 1, {})])
    fetch_backoff.install(0.5)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=None, fetch_max_wait_ms=20
    )
    try:
        with counting_fetches() as counts:
            await consumer.start()
            consumer.assign([TopicPartition(topic, 0)])
            await asyncio.sleep(1.0)
    finally:
        await consumer.stop()
        fetch_backoff.uninstall()
    assert sum(counts.values()) >= 10  # paused 20 ms per fetch, not 500


async def test_a_consumer_can_have_its_own_pause(kafka_bootstrap: str) -> None:
    """set_pause: a tail follower pauses longer than the global pause, others do not."""
    topic = f"fb-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, [TopicSpec(topic, 1, {})])
    fetch_backoff.install(0.005)
    tail = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    quick = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    try:
        with counting_fetches() as counts:
            for c in (tail, quick):
                await c.start()
                c.assign([TopicPartition(topic, 0)])
            fetch_backoff.set_pause(tail, 0.1)
            with pytest.raises(ValueError, match=">= 0"):
                fetch_backoff.set_pause(tail, -1)
            counts.clear()
            await asyncio.sleep(1.0)
    finally:
        for c in (tail, quick):
            await c.stop()
        fetch_backoff.uninstall()
    n_tail, n_quick = counts.get(id(tail._fetcher), 0), counts.get(id(quick._fetcher), 0)
    assert n_tail <= 15, (n_tail, n_quick)  # about 1 s / 100 ms
    assert n_quick > 3 * n_tail, (n_tail, n_quick)


def test_install_validates_and_is_idempotent() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        fetch_backoff.install(-1)
    try:
        fetch_backoff.install(0.01)
        patched = fetcher.Fetcher._proc_fetch_request
        fetch_backoff.install(0.02)  # changes the pause, does not wrap twice
        assert fetcher.Fetcher._proc_fetch_request is patched
        assert fetch_backoff.current() == 0.02
    finally:
        fetch_backoff.uninstall()
    assert fetch_backoff.current() == 0.0
    assert fetcher.Fetcher._proc_fetch_request is not patched


def test_quiet_worker_keeps_the_root_logger_at_its_level() -> None:
    """faust.Worker puts the root logger at DEBUG for its spinner; QuietWorker does not."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    try:
        app = faust.App(f"quiet-{uuid.uuid4().hex[:6]}", broker="kafka://127.0.0.1:1")
        plain = faust.Worker(app, loglevel="warning", redirect_stdouts=False)
        plain._setup_logging()
        assert logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)  # the waste
        quiet = QuietWorker(app, loglevel="warning", redirect_stdouts=False)
        quiet._setup_logging()
        assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("aiokafka").isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(saved_level)
        root.handlers[:] = saved_handlers
