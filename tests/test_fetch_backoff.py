"""The pause after an empty fetch (fetch_backoff.py), on the real embedded broker.

noida-db answers an empty fetch at once, so an idle consumer re-fetches in a tight loop;
with the pause it fetches at most about once per pause, and records still arrive.  The pause
grows while the consumer stays idle, and a record produced by the same process (whoever sends
waits for an answer) wakes the paused fetchers of that topic (or of a topic linked to it), in
any thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer import fetcher

from kato_stream import fetch_backoff
from kato_stream.stream.app import QuietWorker
from kato_stream.topics import TopicSpec, create_topics

pytestmark = pytest.mark.timeout(120)
MAX_VAR = "KATO_STREAM_IDLE_FETCH_BACKOFF_MAX_SECONDS"


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
        fetch_backoff.install(0.05, max_seconds=0.05)
        paced, v2 = await _idle_fetches(kafka_bootstrap, topic, 1.0)
    finally:
        fetch_backoff.uninstall()
    assert v1 == v2 == b"wake"
    assert paced <= 30  # about 1 s / 50 ms, with room for the start-up fetches
    assert tight > 5 * paced, (tight, paced)  # noida-db answers empty fetches at once


def test_pause_doubles_up_to_the_maximum() -> None:
    assert [fetch_backoff.pause_for(0.005, 0.1, n) for n in range(1, 8)] == [
        0.005,
        0.01,
        0.02,
        0.04,
        0.08,
        0.1,
        0.1,
    ]
    assert fetch_backoff.pause_for(0.05, 0.01, 9) == 0.05  # never below the starting pause
    assert fetch_backoff.pause_for(0.0, 0.1, 5) == 0.0  # off
    assert fetch_backoff.pause_for(0.005, 0.1, 10**6) == 0.1  # no overflow


async def test_idle_consumer_slows_down_and_a_record_restarts_the_short_pause(
    kafka_bootstrap: str,
) -> None:
    """Idle for 2 s, the pause grows to the maximum: a dozen fetches, not 2 s / 5 ms.  A record
    from elsewhere (nothing woken) is read within the longest pause, and the fetch that
    brought it starts the short pause again."""
    topic = f"fb-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, [TopicSpec(topic, 1, {})])
    fetch_backoff.install(0.005, max_seconds=0.25)
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        with counting_fetches() as counts:
            await consumer.start()
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await asyncio.sleep(2.0)
            idle = sum(counts.values())
        assert getattr(consumer._fetcher, fetch_backoff.EMPTY_ATTR) >= 6  # at the maximum
        await producer.start()
        unwoken_send = fetch_backoff._state["send"]  # aiokafka's own: wakes nothing
        sent = time.monotonic()
        await (await unwoken_send(producer, topic, b"x"))
        msg = await asyncio.wait_for(consumer.getone(), 5)
        late = time.monotonic() - sent
        assert msg.value == b"x"
        assert getattr(consumer._fetcher, fetch_backoff.EMPTY_ATTR) <= 2  # short again
    finally:
        await producer.stop()
        await consumer.stop()
        fetch_backoff.uninstall()
    # 5, 10, 20, 40, 80, 160 ms, then every 250 ms: about 13 in 2 s (400 at a fixed 5 ms)
    assert idle <= 25, idle
    assert late < 0.25 + 0.5, late


async def test_a_send_wakes_paused_fetchers_in_another_thread(kafka_bootstrap: str) -> None:
    """Faust runs its consumer in a thread with its own event loop: a record produced in the
    main loop ends the consumer's (long) pause there, so the answer is read at once."""
    topic = f"fb-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, [TopicSpec(topic, 1, {})])
    fetch_backoff.install(0.005, max_seconds=3.0)
    received: list[float] = []
    ready, stop = threading.Event(), threading.Event()
    fetchers: list[object] = []

    async def consume() -> None:
        tp = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await consumer.position(tp)
            fetchers.append(consumer._fetcher)
            ready.set()
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                received.extend(time.monotonic() for _ in batch.get(tp, []))
        finally:
            await consumer.stop()

    thread = threading.Thread(target=lambda: asyncio.run(consume()), daemon=True)
    thread.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        assert await asyncio.to_thread(ready.wait, 30)
        for i in range(3):
            # idle long enough for a pause of over a second (1 s short after a send, then
            # 5 ms doubling): without the wake the record would wait for its end
            deadline = time.monotonic() + 10
            while getattr(fetchers[0], fetch_backoff.EMPTY_ATTR, 0) < 9:  # 1.28 s pauses
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert any(
                loop is not asyncio.get_running_loop()
                for loop, _topics in fetch_backoff._sleeping.values()
            )
            sent = time.monotonic()
            await producer.send_and_wait(topic, f"w{i}".encode())
            deadline = time.monotonic() + 5
            while len(received) <= i and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert len(received) == i + 1
            assert received[i] - sent < 0.5, received[i] - sent
    finally:
        stop.set()
        await producer.stop()
        await asyncio.to_thread(thread.join, 10)
        fetch_backoff.uninstall()


async def test_a_send_wakes_only_the_fetchers_of_its_topic_or_a_linked_one(
    kafka_bootstrap: str,
) -> None:
    """A worker sends an output record per command to a topic none of its own consumers reads:
    its paused followers sleep on (they used to fetch once per output record).  A send to the
    topic a fetcher reads ends its pause, and so does a send to a topic linked to it (the
    gateway sends a command and reads the answer on the output topic)."""
    mine, other = (f"fb-{uuid.uuid4().hex[:8]}" for _ in range(2))
    await create_topics(kafka_bootstrap, [TopicSpec(mine, 1, {}), TopicSpec(other, 1, {})])
    fetch_backoff.install(0.005, max_seconds=3.0)
    tp = TopicPartition(mine, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)

    async def long_pause() -> None:  # 5 ms doubling: 0.64 s and longer from the 8th empty
        fetch_backoff._state["woken_at"] = float("-inf")  # not hot: the pause grows
        deadline = time.monotonic() + 15
        while getattr(consumer._fetcher, fetch_backoff.EMPTY_ATTR, 0) < 9:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)

    try:
        await producer.start()
        with counting_fetches() as counts:
            await consumer.start()
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await consumer.position(tp)
            await long_pause()
            before = sum(counts.values())
            for _ in range(5):
                await producer.send_and_wait(other, b"elsewhere")
            await asyncio.sleep(0.1)
            unrelated = sum(counts.values()) - before  # no pause ended by these sends
            fetch_backoff.link(other, mine)
            before = sum(counts.values())
            await producer.send_and_wait(other, b"linked")
            await asyncio.sleep(0.1)
            linked = sum(counts.values()) - before
            await long_pause()
            await producer.send_and_wait(mine, b"mine")
            msg = await asyncio.wait_for(consumer.getone(), 0.5)  # woken: read at once
            assert msg.value == b"mine"
    finally:
        await producer.stop()
        await consumer.stop()
        fetch_backoff.uninstall()
    assert unrelated == 0, unrelated
    assert linked >= 1, linked


async def test_a_fetch_the_broker_held_is_not_paused() -> None:
    """A broker that long-polls (the empty answer took half the consumer's fetch wait) is not
    made to wait again; an empty answer at once is."""
    real = fetcher.Fetcher._proc_fetch_request
    fetch_backoff.uninstall()
    delay = [0.0]

    async def answer(self, assignment, node_id, request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(delay[0])
        return False

    fetcher.Fetcher._proc_fetch_request = answer
    try:
        fetch_backoff.install(0.2, max_seconds=0.2)
        me = SimpleNamespace(_fetch_max_wait_ms=100)
        active = SimpleNamespace(active=True, tps=())
        for held, want in ((0.06, (0.06, 0.15)), (0.0, (0.19, 0.4))):
            delay[0] = held
            t = time.monotonic()
            assert await fetcher.Fetcher._proc_fetch_request(me, active, 0, None) is False
            took = time.monotonic() - t
            assert want[0] <= took < want[1], (held, took)
    finally:
        fetch_backoff.uninstall()
        fetcher.Fetcher._proc_fetch_request = real


async def test_a_consumer_can_have_its_own_pause(kafka_bootstrap: str) -> None:
    """set_pause: a tail follower pauses longer than the global pause, others do not."""
    topic = f"fb-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, [TopicSpec(topic, 1, {})])
    fetch_backoff.install(0.005, max_seconds=0.005)  # fixed pauses: only set_pause differs
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
    from aiokafka.producer.producer import AIOKafkaProducer as Producer

    with pytest.raises(ValueError, match=">= 0"):
        fetch_backoff.install(-1, 0.05)
    with pytest.raises(ValueError, match=">= 0"):
        fetch_backoff.install(0.01, max_seconds=-1)
    send = Producer.send
    try:
        fetch_backoff.install(0.01, 0.05)
        patched = fetcher.Fetcher._proc_fetch_request
        assert Producer.send is not send  # a send wakes the paused fetchers
        assert fetch_backoff.current_max() == 0.05
        fetch_backoff.install(0.02, 0.05)  # changes the pause, does not wrap twice
        assert fetcher.Fetcher._proc_fetch_request is patched
        assert fetch_backoff.current() == 0.02
        fetch_backoff.install(0.02, 0.3)
        assert fetch_backoff.current_max() == 0.3
        fetch_backoff.install(0.5, 0.3)  # the maximum is never below the starting pause
        assert fetch_backoff.current_max() == 0.5
    finally:
        fetch_backoff.uninstall()
    assert fetch_backoff.current() == 0.0 and fetch_backoff.current_max() == 0.0
    assert fetcher.Fetcher._proc_fetch_request is not patched
    assert Producer.send is send


@pytest.mark.parametrize(
    ("env", "want"),
    [({}, (0.005, 0.05)), ({"KATO_STREAM_IDLE_FETCH_BACKOFF_MAX_SECONDS": "0.3"}, (0.005, 0.3))],
)
def test_the_pauses_come_from_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], want: tuple[float, float]
) -> None:
    """A call site (here the CLI's) installs both pauses from Settings: the environment is
    read in settings.py only, and an out-of-range maximum fails there, naming the variable."""
    from kato_stream.cli import _settings
    from kato_stream.settings import Settings, SettingsError

    for key in ("KATO_STREAM_IDLE_FETCH_BACKOFF_SECONDS", MAX_VAR):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        _settings(argparse.Namespace())
        assert (fetch_backoff.current(), fetch_backoff.current_max()) == want
    finally:
        fetch_backoff.uninstall()
    with pytest.raises(SettingsError, match=MAX_VAR):
        Settings.from_env({MAX_VAR: "-1"})


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


async def test_the_reply_window_shortens_the_pause_of_the_answering_topic_only(
    kafka_bootstrap: str,
) -> None:
    """Right after a client's send, the fetchers of the topic its answers come back on pause
    only ``reply_seconds``, for ``reply_window``; other fetchers (a topic merely linked, as
    the worker links its output to its input) keep their pause, and after the window the
    answering one does too."""
    sent, answers, other = (f"fb-{uuid.uuid4().hex[:8]}" for _ in range(3))
    await create_topics(kafka_bootstrap, [TopicSpec(t, 1, {}) for t in (sent, answers, other)])
    fetch_backoff.install(0.02, max_seconds=0.02, reply_seconds=0.001, reply_window=0.25)
    fetch_backoff.link(sent, answers, replies=True)
    fetch_backoff.link(sent, other)  # woken, but no reply window
    consumers = {t: AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap) for t in (answers, other)}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        await producer.start()
        for t, c in consumers.items():
            await c.start()
            c.assign([TopicPartition(t, 0)])
            await c.seek_to_end(TopicPartition(t, 0))
        await asyncio.sleep(0.3)  # settled at the 20 ms pause
        with counting_fetches() as during:
            await (await producer.send(sent, b"command"))  # the patched send: wakes
            await asyncio.sleep(0.25)
        with counting_fetches() as after:
            await asyncio.sleep(0.25)
    finally:
        for c in consumers.values():
            await c.stop()
        await producer.stop()
        fetch_backoff.uninstall()
    ids = {t: id(c._fetcher) for t, c in consumers.items()}
    assert during[ids[answers]] >= 40, during  # ~1 ms pauses (250 at most)
    assert during[ids[other]] <= 20, during  # its 20 ms pause: about 12
    assert after[ids[answers]] <= 20, after  # the window is over


def test_install_refuses_a_negative_reply_pause() -> None:
    try:
        with pytest.raises(ValueError, match="reply fetch backoff"):
            fetch_backoff.install(0.01, 0.05, reply_seconds=-1)
        fetch_backoff.install(0.005, 0.05, reply_seconds=0.5, reply_window=0.05)
        assert fetch_backoff._state["reply"] == 0.005  # never longer than the usual pause
    finally:
        fetch_backoff.uninstall()
