"""The Faust and aiokafka internals kato-stream relies on, in one place.

Each function here reads or calls something that is not the library's public API; each has a
check in ``tests/test_compat.py`` that fails loudly when an upgrade removes it.  Code
elsewhere calls these functions, never the internals themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

__all__ = [
    "FetchStep",
    "admin_request",
    "after_faust_perform_seek",
    "aiokafka_member_id",
    "faust_committed_offset",
    "faust_replace_gap_fill",
    "faust_forget_read_offset",
    "faust_member_id",
    "faust_noack_take",
    "faust_seek_to_beginning",
    "faust_table_delete",
    "faust_table_set",
    "faust_table_set_done",
    "fetch_assignment",
    "fetcher_of",
    "fetcher_max_wait",
    "refresh_metadata",
    "wrap_aiokafka_fetch_step",
    "wrap_aiokafka_send",
]

log = logging.getLogger(__name__)

#: aiokafka's per-node fetch step: ``(fetcher, assignment, node_id, request) -> has_data``.
FetchStep = Callable[[Any, Any, int, Any], Awaitable[bool]]


def wrap_aiokafka_fetch_step(wrap: Callable[[FetchStep], FetchStep]) -> Callable[[], None]:
    """Replace aiokafka's per-node fetch step with ``wrap(original)``; returns the undo.

    aiokafka has no hook between two fetches of a consumer: ``Fetcher._proc_fetch_request``
    sends one fetch to one broker and says whether it brought records, and the fetch
    routine calls it again at once (fetch_backoff.py pauses there)."""
    from aiokafka.consumer import fetcher

    original = fetcher.Fetcher._proc_fetch_request  # noqa: SLF001
    fetcher.Fetcher._proc_fetch_request = wrap(original)  # noqa: SLF001

    def undo() -> None:
        fetcher.Fetcher._proc_fetch_request = original  # noqa: SLF001

    return undo


def wrap_aiokafka_send(
    wrap: Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]],
) -> Callable[[], None]:
    """Replace ``AIOKafkaProducer.send`` (public, ``(self, topic, ...)``) for every producer
    of the process with ``wrap(original)``; returns the undo.  Patching the class is what
    reaches Faust's producer too, which kato-stream does not construct."""
    from aiokafka.producer import producer

    original = producer.AIOKafkaProducer.send
    producer.AIOKafkaProducer.send = wrap(original)

    def undo() -> None:
        producer.AIOKafkaProducer.send = original

    return undo


def fetch_assignment(assignment: Any) -> tuple[bool, frozenset[str]]:
    """(still current, topics read) of the partition assignment a fetch step was given
    (aiokafka's ``Assignment.active`` and ``.tps``)."""
    return bool(assignment.active), frozenset(tp.topic for tp in assignment.tps)


def fetcher_of(consumer: Any) -> Any:
    """An ``AIOKafkaConsumer``'s fetcher (``_fetcher``: no public accessor), where
    fetch_backoff.py keeps a consumer's own pause."""
    return consumer._fetcher  # noqa: SLF001


def fetcher_max_wait(fetcher: Any) -> float:
    """The ``fetch_max_wait_ms`` a fetcher asks the broker for, in seconds (500 ms unknown)."""
    return float(getattr(fetcher, "_fetch_max_wait_ms", 500)) / 1000.0


def aiokafka_member_id(consumer: Any) -> str | None:
    """The member id an aiokafka group consumer holds now (None before it joined).

    aiokafka keeps it on the consumer's group coordinator (``_coordinator.member_id``); it
    has no public accessor."""
    coordinator = getattr(consumer, "_coordinator", None)
    member = getattr(coordinator, "member_id", None)
    return member or None


def faust_member_id(app: Any) -> str | None:
    """The member id of a Faust app's consumer (None before it joined or when stopped).

    Faust runs its aiokafka consumer in a thread service (``app.consumer._thread``) whose
    ``_consumer`` is the aiokafka consumer."""
    thread = getattr(app.consumer, "_thread", None)
    return aiokafka_member_id(getattr(thread, "_consumer", None))


async def admin_request(admin: Any, node: Any, request: Any) -> Any:
    """Send a protocol request (e.g. LeaveGroup) through an aiokafka admin client.

    ``AIOKafkaAdminClient`` has no public call for requests it does not wrap; its
    ``_send_request_to_node`` is the one it uses itself."""
    return await admin._send_request_to_node(node, request)  # noqa: SLF001


def faust_table_set(table: Any, key: Any, value: Any, event: Any) -> None:
    """``table[key] = value`` with its changelog record on the partition of ``event`` (the
    input record the value answers).

    A Faust table writes its changelog to the partition of the *current event*
    (``Table.partition_for_key`` reads the ``faust.streams._current_event`` context
    variable), which is the last event the stream yielded, not necessarily this value's:
    the checkpoint writes a whole batch's values after the batch, so it names each one's
    event.  Call :func:`faust_table_set_done` after the last write."""
    import weakref

    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))
    table[key] = value


def faust_table_set_done() -> None:
    """Clear the current event :func:`faust_table_set` set (nothing may write by mistake
    to the last value's partition)."""
    from faust.streams import _current_event

    _current_event.set(None)


def faust_table_delete(table: Any, key: Any, partition: int) -> Any:
    """Delete ``key`` from a Faust table outside stream iteration (a timer's sweep), with its
    tombstone on changelog partition ``partition``; returns the send's future.

    ``del table[key]`` needs the current event (``Table.partition_for_key``), which a timer
    has none of.  The public ``Collection.send_changelog`` takes the partition; the value is
    removed from the store (``table.data``) directly, and from the in-memory store's record
    of recovered keys (``Store._key_partition``), which would otherwise keep every deleted
    key of a recovered partition."""
    fut = table.send_changelog(partition, key, None, value_serializer="raw")
    store = table.data
    store.pop(key, None)
    key_partition = getattr(store, "_key_partition", None)  # memory store only
    if key_partition is not None:
        key_partition.pop(key, None)
    return fut


async def refresh_metadata(client_owner: Any) -> None:
    """Fetch the cluster's metadata now, through an aiokafka consumer, producer or admin
    client's own connection (``_client.force_metadata_update``): aiokafka has no public call,
    and a client that just created a topic or was just assigned one must see it."""
    await client_owner._client.force_metadata_update()  # noqa: SLF001


def faust_replace_gap_fill(
    replacement: Callable[[Any, Any, int, int], Awaitable[None]],
) -> None:
    """Make Faust's consumer call ``replacement(consumer, tp, offset_from, offset_to)`` where
    it would record an offset gap (``Consumer._add_gap``), for every consumer of the process
    (continuity.py: its guard fills holes instead)."""
    from faust.transport.consumer import Consumer

    Consumer._add_gap = replacement  # type: ignore[method-assign,assignment]  # noqa: SLF001


def faust_committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset Faust holds as committed for ``tp`` (None: nothing committed, or not known).

    Faust keeps it in ``Consumer._committed_offset``, set from the broker's committed offsets
    when it seeks after an assignment (``perform_seek``) and after each commit of its own; a
    partition never committed stays None (aiokafka's ``committed()`` turns the broker's -1
    into None, and ``perform_seek`` stores only the others)."""
    try:
        value = consumer._committed_offset.get(tp)  # noqa: SLF001
    except AttributeError:  # consumer not created or not started
        return None
    return None if value is None else int(value)


def faust_forget_read_offset(consumer: Any, tp: Any) -> None:
    """Make Faust accept the next record of ``tp`` whatever its offset.

    Faust drops a fetched record whose offset is below the last one it read from that
    partition (``Consumer._read_offset``; its own ``seek`` resets it the same way)."""
    consumer._read_offset[tp] = None  # noqa: SLF001


async def faust_seek_to_beginning(consumer: Any, tps: Any) -> None:
    """Seek the partitions ``tps`` of a Faust consumer to their first offset (and wait until
    the fetcher is there).

    Faust's consumer has no such call; the thread running its aiokafka consumer
    (``consumer._thread``) has ``seek_to_beginning``, which passes the partitions on to
    aiokafka's, and that one takes only aiokafka's ``TopicPartition`` (Faust's ``TP`` is a
    look-alike NamedTuple, refused by its ``isinstance`` check)."""
    from aiokafka import TopicPartition

    parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
    await consumer._thread.seek_to_beginning(*parts)  # noqa: SLF001


_SEEK_HOOKS: list[Callable[[Any], Awaitable[None]]] = []


def after_faust_perform_seek(hook: Callable[[Any], Awaitable[None]]) -> None:
    """Call ``await hook(consumer)`` each time a Faust consumer has sought its partitions to
    their committed offsets (idempotent per hook).

    ``faust.transport.consumer.Consumer.perform_seek`` is what Faust runs once a table
    recovery is done, before it resumes the streams (``Recovery.on_recovery_completed``,
    ``Recovery._resume_streams``), and when it finds the flow stopped in ``getmany``; it has
    no signal of its own.  A failing hook is logged, never raised into Faust."""
    from faust.transport.consumer import Consumer

    if hook in _SEEK_HOOKS:
        return
    _SEEK_HOOKS.append(hook)
    if getattr(Consumer.perform_seek, "_kato_hooked", False):
        return
    original = Consumer.perform_seek

    async def perform_seek(self: Any) -> None:
        await original(self)
        for h in list(_SEEK_HOOKS):
            try:
                await h(self)
            except Exception as exc:  # the streams must resume whatever the hook did
                log.warning("after-seek hook %r failed: %r", h, exc)

    perform_seek._kato_hooked = True  # type: ignore[attr-defined]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


def faust_noack_take(stream: Any, max_: int, within: float) -> AsyncGenerator[list[Any], None]:
    """Faust's ``Stream.noack_take(max_, within)``, without waking while there is nothing.

    Faust's loop waits for a full buffer with ``within`` as its timeout, so an idle agent
    wakes every ``within`` seconds (500 times a second at the worker's 2 ms) to find an
    empty buffer: about half of an idle worker's CPU (benchmarks/results/idle_cpu.json,
    ``batch_within_50ms``).  Here the loop first waits, without a timeout, for the first
    event of a batch, then at most ``within`` for the buffer to fill: the same batches while
    records flow, no wake-ups while none do.  Everything else is Faust's code: the buffering
    processor (``Stream.add_processor``, ``_enable_passive``, ``current_event``), acks left to
    the caller (``enable_acks``), the generator registered for cleanup (``_active_agens``)."""
    agen = _noack_take(stream, max_, within)
    active = getattr(stream, "_active_agens", None)  # Stream.on_stop closes what is left
    if active is not None:
        active.add(agen)
    return agen


async def _noack_take(stream: Any, max_: int, within: float) -> AsyncGenerator[list[Any], None]:
    from mode.utils.futures import notify

    buffer: list[Any] = []
    events: list[Any] = []
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    first = asyncio.Event()
    acks = stream.enable_acks
    consuming: asyncio.Future[None] | None = None

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take buffer found current_event is None")
            buffer.append(event)
            events.append(event)
            first.set()
            if len(buffer) >= max_:
                buffer_full.set()
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter_of(stream.channel))  # noqa: SLF001
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(first)  # no timeout: nothing to do until a record
            if stream.should_stop:
                break
            await stream.wait_for_stopped(buffer_full, timeout=within)
            if buffer:
                consuming = asyncio.get_running_loop().create_future()
                try:
                    yield list(buffer)
                finally:
                    buffer.clear()
                    events.clear()
                    first.clear()
                    notify(consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
            else:
                first.clear()
    finally:
        stream.enable_acks = acks
        stream._processors.remove(add_to_buffer)  # noqa: SLF001


def aiter_of(channel: Any) -> Any:
    """``aiter(channel)`` as Faust's streams take it (mode's helper)."""
    from mode.utils.aiter import aiter

    return aiter(channel)
