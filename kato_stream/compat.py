"""The Faust and aiokafka internals kato-stream relies on, in one place.

Each function here reads or calls something that is not the library's public API; each has a
check in ``tests/test_compat.py`` that fails loudly when an upgrade removes it.  Code
elsewhere calls these functions, never the internals themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "admin_request",
    "after_faust_perform_seek",
    "aiokafka_member_id",
    "faust_committed_offset",
    "faust_forget_read_offset",
    "faust_member_id",
    "faust_seek_to_beginning",
    "faust_table_delete",
]

log = logging.getLogger(__name__)


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
