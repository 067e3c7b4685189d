"""The Faust and aiokafka internals of ``kato_stream/compat.py`` still exist and still mean
what kato-stream relies on: an upgrade that removes or changes one fails here, by name."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.transport.consumer import Consumer
from faust.types import TP

from kato_stream import compat
from kato_stream.compat import (
    after_faust_perform_seek,
    aiokafka_member_id,
    faust_committed_offset,
    faust_forget_read_offset,
    faust_member_id,
    faust_seek_to_beginning,
)
from kato_stream.stream.group import describe, evict_members


@pytest.mark.stack
async def test_member_id_and_admin_requests_on_a_real_group(
    kafka_bootstrap: str, unique_id: str
) -> None:
    topic, group = f"compat-{unique_id}", f"compat-g-{unique_id}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group)
    assert aiokafka_member_id(consumer) is None  # not joined
    await consumer.start()
    try:
        for _ in range(40):
            await consumer.getmany(timeout_ms=250)
            if consumer.assignment():
                break
        mid = aiokafka_member_id(consumer)
        assert isinstance(mid, str) and mid
        state, members = (await describe(kafka_bootstrap, [group]))[group]
        assert [m.member_id for m in members] == [mid]
        # compat.admin_request carries the LeaveGroup the operator's command sends
        assert await evict_members(kafka_bootstrap, group, [mid]) == [mid]
        for _ in range(40):
            if not (await describe(kafka_bootstrap, [group]))[group][1]:
                break
            await asyncio.sleep(0.1)
        assert (await describe(kafka_bootstrap, [group]))[group][1] == []
    finally:
        await consumer.stop()


def test_faust_consumer_thread_holds_the_aiokafka_consumer() -> None:
    app = faust.App("compat-probe", broker="kafka://127.0.0.1:1", autodiscover=False)
    thread = app.consumer._thread  # noqa: SLF001  (what compat.faust_member_id reads)
    assert hasattr(thread, "_consumer")
    assert hasattr(thread, "_create_consumer")  # where Faust builds it: an AIOKafkaConsumer
    assert faust_member_id(app) is None  # not started


def test_faust_consumer_offsets_and_seek_to_beginning_are_where_compat_reads_them() -> None:
    """What the continuity guard's re-seek of uncommitted partitions relies on."""
    app = faust.App("compat-seek", broker="kafka://127.0.0.1:1", autodiscover=False)
    consumer = app.consumer
    tp = TP("t", 0)
    assert faust_committed_offset(consumer, tp) is None  # nothing committed: None
    consumer._committed_offset[tp] = 12  # noqa: SLF001  (what perform_seek and commits set)
    assert faust_committed_offset(consumer, tp) == 12
    consumer._read_offset[tp] = 11  # noqa: SLF001
    faust_forget_read_offset(consumer, tp)
    assert consumer._read_offset[tp] is None  # noqa: SLF001
    thread = consumer._thread  # noqa: SLF001
    assert inspect.iscoroutinefunction(thread.seek_to_beginning)
    assert inspect.iscoroutinefunction(Consumer.perform_seek)

    # aiokafka's own seek_to_beginning refuses Faust's TP: compat converts
    async def refused() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        try:
            await consumer.seek_to_beginning(tp)  # type: ignore[arg-type]
        finally:
            await consumer.stop()

    with pytest.raises(TypeError, match="TopicPartition"):
        asyncio.run(refused())

    class Thread:
        got: tuple[TopicPartition, ...] = ()

        async def seek_to_beginning(self, *tps: TopicPartition) -> None:
            self.got = tps

    class Probe:
        _thread = Thread()

    probe = Probe()
    asyncio.run(faust_seek_to_beginning(probe, [tp]))
    assert probe._thread.got == (TopicPartition("t", 0),)
    assert all(type(x) is TopicPartition for x in probe._thread.got)


async def test_after_faust_perform_seek_runs_after_fausts_seek() -> None:
    order: list[str] = []

    class Probe:
        _read_offset: dict[TP, int | None] = {}
        _committed_offset: dict[TP, int | None] = {}

        async def seek_to_committed(self) -> dict[TP, int]:
            order.append("faust")
            return {TP("t", 0): 5}

    async def hook(consumer: object) -> None:
        order.append("hook")
        assert isinstance(consumer, Probe)

    after_faust_perform_seek(hook)
    after_faust_perform_seek(hook)  # once per hook
    await Consumer.perform_seek(Probe())  # type: ignore[arg-type]
    assert order == ["faust", "hook"]
    assert Probe._committed_offset[TP("t", 0)] == 5
    assert inspect.iscoroutinefunction(Consumer.perform_seek)


def test_faust_stream_has_what_the_idle_free_take_uses() -> None:
    """compat.faust_noack_take is Faust's noack_take with a first-event wait: it needs the
    stream's buffering processor hooks, passive consumption and stop-aware waits."""
    import faust.streams

    stream_cls = faust.streams.Stream
    for name in ("add_processor", "_enable_passive", "wait_for_stopped", "wait", "crash"):
        assert callable(getattr(stream_cls, name, None)), name
    assert hasattr(stream_cls, "current_event")  # set per event while the stream iterates
    app = faust.App("compat-take", broker="kafka://127.0.0.1:1", autodiscover=False)
    stream = app.stream(app.channel())
    assert stream.enable_acks is True
    assert isinstance(stream._processors, list)  # noqa: SLF001
    assert hasattr(stream, "_active_agens")  # Stream.on_stop closes registered generators
    from mode.utils.aiter import aiter
    from mode.utils.futures import notify

    assert callable(aiter) and callable(notify)


def test_faust_table_internals_the_checkpoint_and_the_expiry_sweep_use() -> None:
    """compat.faust_table_set names the changelog partition through Faust's current-event
    context variable; compat.faust_table_delete sends a tombstone to a given partition."""
    import contextvars
    import inspect

    import faust.streams
    import faust.tables.base
    import faust.tables.table

    assert isinstance(faust.streams._current_event, contextvars.ContextVar)  # noqa: SLF001
    src = inspect.getsource(faust.tables.base.Collection.partition_for_key)
    assert "current_event()" in src  # where a write's partition comes from
    params = list(inspect.signature(faust.tables.base.Collection.send_changelog).parameters)
    assert params[:4] == ["self", "partition", "key", "value"]
    app = faust.App("compat-table", broker="kafka://127.0.0.1:1", autodiscover=False)
    table = app.Table("t", default=None)
    assert hasattr(table.data, "_key_partition")  # the in-memory store's recovered keys


async def test_aiokafka_fetch_step_and_send_the_fetch_backoff_wraps() -> None:
    """fetch_backoff.py wraps aiokafka's per-node fetch step and the producer's send: the step
    is a coroutine ``(assignment, node_id, request) -> bool`` (records or not), an assignment
    knows its partitions (``tps``, for the topics a paused fetcher reads) and whether it is
    still current (``active``), and ``send`` takes the topic first."""
    from aiokafka.consumer import fetcher
    from aiokafka.consumer.subscription_state import Assignment
    from aiokafka.producer.producer import AIOKafkaProducer

    step = fetcher.Fetcher._proc_fetch_request  # noqa: SLF001
    assert inspect.iscoroutinefunction(step)
    assert list(inspect.signature(step).parameters) == ["self", "assignment", "node_id", "request"]
    assignment = Assignment([TopicPartition("t", 0), TopicPartition("u", 1)])
    assert {tp.topic for tp in assignment.tps} == {"t", "u"}
    assert assignment.active is True
    assert list(inspect.signature(AIOKafkaProducer.send).parameters)[:2] == ["self", "topic"]
    assert compat.fetch_assignment(assignment) == (True, frozenset({"t", "u"}))


def test_the_fetch_step_and_send_wrappers_wrap_and_undo() -> None:
    """compat's wrappers put ``wrap(original)`` in place for every fetcher and producer, and
    their undo puts the original back (fetch_backoff.uninstall relies on it)."""
    from aiokafka.consumer import fetcher
    from aiokafka.producer.producer import AIOKafkaProducer

    step, send = fetcher.Fetcher._proc_fetch_request, AIOKafkaProducer.send  # noqa: SLF001
    seen: list[object] = []

    def wrap(original: Any) -> Any:
        seen.append(original)

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            return await original(*args, **kwargs)

        return wrapped

    undo_step = compat.wrap_aiokafka_fetch_step(wrap)
    undo_send = compat.wrap_aiokafka_send(wrap)
    try:
        assert seen == [step, send]
        assert fetcher.Fetcher._proc_fetch_request is not step  # noqa: SLF001
        assert AIOKafkaProducer.send is not send
    finally:
        undo_step()
        undo_send()
    assert fetcher.Fetcher._proc_fetch_request is step  # noqa: SLF001
    assert AIOKafkaProducer.send is send


async def test_metadata_refresh_and_gap_fill_internals_are_there(kafka_bootstrap: str) -> None:
    """compat.refresh_metadata reaches a client's ``_client.force_metadata_update`` (a real
    consumer against the broker), and Faust's consumer still records gaps through
    ``_add_gap(self, tp, offset_from, offset_to)``, which continuity.py replaces."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        await compat.refresh_metadata(consumer)
        assert consumer._client.cluster.brokers()  # noqa: SLF001  (the refresh found the broker)
    finally:
        await consumer.stop()
    params = list(inspect.signature(Consumer._add_gap).parameters)  # noqa: SLF001
    assert params == ["self", "tp", "offset_from", "offset_to"]
    assert inspect.iscoroutinefunction(Consumer._add_gap)  # noqa: SLF001
