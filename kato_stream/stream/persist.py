"""Persistence: ``kato.patterns`` -> ClickHouse, Redis and Qdrant; latest records -> Redis.

:class:`PatternPersister` consumes the pattern topic in its own consumer group
(``"<app_id>-persist"``), so each event is persisted once per deployment whichever worker
holds the partition, and writes every

* learn event to ClickHouse (``add_learn`` with ``seq`` = the topic offset and its
  partition, so ``load_node`` replays a node in topic order - a node's events share one
  partition - and a starting worker can load everything below the committed offsets),
  Redis (``write_learn``: KATO's key layout) and Qdrant (the event's vectors);
* clear event to all three (``clear_node`` / ``clear``).

It reads a batch, writes it, waits until every store acknowledged (ClickHouse flushed,
Redis transactions executed, Qdrant upserts ``wait=True``) and only then commits the
batch's offsets.  Delivery is at least once, which is safe: every write is idempotent
(ClickHouse dedupes by ``learn_id``/``clear_id`` keeping the least ``seq``, Redis records
applied ids, Qdrant upserts by point id and a clear deletes the collection).

A store that fails (or cannot be opened, e.g. a chdb directory locked by another process)
never stops the worker: the persister logs, reopens its consumer at the committed offsets
and retries with backoff; nothing past the last commit is lost.

:class:`LatestWriter` keeps the latest output record per session in Redis
(``RedisStore.set_latest``) off the agent's path: records are coalesced per session and
written in pipelined batches every ``store_flush_seconds``; best effort (a Redis outage
drops them, the record itself is on ``kato.predictions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from kato_stream import compat, fetch_backoff
from kato_stream.core.knowledge import LearnEvent
from kato_stream.kafka import client_options
from kato_stream.service import Service
from kato_stream.settings import Settings
from kato_stream.stores.keys import APPLIED_KEY, LATEST_KEY
from kato_stream.stream import codecs
from kato_stream.stream.persisted import mark_key

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_BACKOFF = 10.0


def persist_group(settings: Settings) -> str:
    """The persister's consumer group of a deployment."""
    return f"{settings.app_id}-persist"


class PatternPersister(Service):
    """Writes ``kato.patterns`` to the durable stores (``async start()``/``stop()``).

    Stores passed in are used as given (already started, not stopped here, flushed on
    stop); stores not passed are built from ``settings``, opened by the run loop (with
    retries) and closed by :meth:`stop`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clickhouse: Any = None,
        redis: Any = None,
        qdrant: Any = None,
        group_id: str | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.topic = settings.topic("patterns")
        self.group_id = group_id or persist_group(settings)
        self.max_batch = max_batch
        self._given = {"clickhouse": clickhouse, "redis": redis, "qdrant": qdrant}
        self.clickhouse: Any = clickhouse
        self.redis: Any = redis
        self.qdrant: Any = qdrant
        self._owned: list[Any] = []
        self._consumer: Any = None
        self._stopping = asyncio.Event()
        self.committed: dict[int, int] = {}  # partition -> next offset to persist
        self.persisted = 0  # events written (redeliveries included)
        self.skipped = 0  # redelivered or echoed events (ids already applied)
        self.errors = 0
        self.running = asyncio.Event()  # stores open and consumer subscribed

    # -- lifecycle ---------------------------------------------------------------------

    async def on_start(self) -> None:
        """Start the run loop (stores and consumer are opened by it, with retries)."""
        self._stopping = asyncio.Event()
        self.running = asyncio.Event()
        # supervised (supervise.py): _run retries store and broker errors itself; anything
        # that escapes it is logged, counted and the loop started again from the commit.
        # Stopping asks it to finish the batch in hand (write + commit) first.
        self.supervise(
            "persister",
            self._run_from_commit,
            drain=self._stopping.set,
            grace=max(5.0, 3 * self.settings.store_timeout),
        )

    async def on_stop(self) -> None:
        """Close the consumer; flush the stores handed in, close the ones opened here."""
        await self._close_consumer()
        for name in ("clickhouse", "qdrant"):
            store = getattr(self, name)
            if store is not None and self._given[name] is not None:
                with contextlib.suppress(Exception):
                    await store.flush()
        for store in reversed(self._owned):
            try:
                await store.stop()
            except Exception:
                log.exception("closing %s failed", type(store).__name__)
        self._owned.clear()
        for name, given in self._given.items():
            setattr(self, name, given)

    async def _open_stores(self) -> None:
        from kato_stream.stores import ClickHouseStore, QdrantStore, RedisStore

        factories: dict[str, type[ClickHouseStore | RedisStore | QdrantStore]] = {
            "clickhouse": ClickHouseStore,
            "redis": RedisStore,
            "qdrant": QdrantStore,
        }
        for name, factory in factories.items():
            if getattr(self, name) is None:
                store = factory(self.settings)
                await store.start()
                setattr(self, name, store)
                self._owned.append(store)

    async def _open_consumer(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from kato_stream.stream.group import client_id

        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            client_id=client_id("persist"),  # names the process: group.py
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            session_timeout_ms=int(max(6.0, self.settings.session_timeout) * 1000),
            heartbeat_interval_ms=int(max(0.5, self.settings.session_timeout / 6) * 1000),
            max_partition_fetch_bytes=max(1_048_576, self.settings.max_message_bytes * 4),
            **client_options(self.settings),
        )
        await consumer.start()
        fetch_backoff.set_pause(consumer, self.settings.tail_fetch_backoff)  # a tail follower
        self._consumer = consumer

    def member_id(self) -> str | None:
        """The member id the persister's group consumer holds now (group.GroupWatchdog)."""
        from kato_stream.compat import aiokafka_member_id

        return aiokafka_member_id(self._consumer)

    async def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    # -- run loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                if self._consumer is None:
                    await self._open_stores()
                    await self._open_consumer()
                    self.running.set()
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                if batches:
                    await self._persist(batches)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                log.warning("persisting %s failed, retrying in %.1fs: %s", self.topic, backoff, exc)
                self.running.clear()
                # Reopen at the committed offsets: the failed batch is written again.
                await self._close_consumer()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)

    async def _run_from_commit(self) -> None:
        await self._close_consumer()  # a restart reopens the consumer at the committed offsets
        await self._run()

    async def _persist(self, batches: dict[Any, list[Any]]) -> None:
        """Write one fetched batch to every store, then commit its offsets.

        Events whose id Redis already recorded (redeliveries, echoes) are skipped: the
        ClickHouse tables are ReplacingMergeTrees without a version column, so a second row
        of an id at a later offset could replace the first one's ``seq`` and reorder
        ``load_node``.  Hence the order: ClickHouse (flushed) and Qdrant first, Redis (which
        records the ids) last; a failure in between re-writes the same rows, same ``seq``.
        """
        from aiokafka.structs import OffsetAndMetadata

        ch, rd, qd = self.clickhouse, self.redis, self.qdrant
        todo: list[tuple[str, dict[str, Any], int, int]] = []
        offsets: dict[Any, int] = {}
        for tp, msgs in batches.items():
            for msg in msgs:
                try:
                    event = codecs.loads(msg.value)
                    kind = str(event.get("type"))
                    node_id = str(event["node_id"])
                    ident = str(event["learn_id"] if kind == "learn" else event["clear_id"])
                    if kind not in ("learn", "clear"):
                        raise ValueError(f"unknown pattern event type {kind!r}")
                except Exception:  # a bad event must not block the partition
                    log.exception("bad pattern event at %s:%s: skipped", tp, msg.offset)
                    continue
                todo.append((ident, event, tp.partition, msg.offset))
            if msgs:
                offsets[tp] = msgs[-1].offset + 1
        # ids already applied (Redis) or seen earlier in this batch
        async with rd.client.pipeline(transaction=False) as pipe:
            for ident, event, _, _ in todo:
                pipe.sismember(APPLIED_KEY.format(kb=rd.kb(str(event["node_id"]))), ident)
            known = await pipe.execute() if todo else []
        seen: set[tuple[str, str]] = set()
        fresh: list[tuple[dict[str, Any], int, int]] = []
        for (ident, event, partition, offset), done in zip(todo, known, strict=True):
            key = (str(event["node_id"]), ident)
            if not done and key not in seen:
                seen.add(key)
                fresh.append((event, partition, offset))
        for event, partition, offset in fresh:  # ClickHouse and Qdrant, in topic order
            node_id = str(event["node_id"])
            if event["type"] == "learn":
                ev = LearnEvent.from_dict(event)
                ch.add_learn(ev, seq=offset, partition=partition)
                if ev.vectors:
                    await qd.add(node_id, [(n, tuple(v)) for n, v in ev.vectors])
            else:
                await ch.clear_node(
                    node_id, str(event["clear_id"]), seq=offset, partition=partition
                )
                await qd.clear(node_id)
        await ch.flush()
        for event, _, _ in fresh:  # Redis last: it records the applied ids
            if event["type"] == "learn":
                await rd.write_learn(LearnEvent.from_dict(event))
            else:
                await rd.clear_node(str(event["node_id"]), str(event["clear_id"]))
        if offsets:
            await self._consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
            for tp, o in offsets.items():
                self.committed[tp.partition] = o
            # how far every store holds the topic: readers of a learn wait on it (persisted.py)
            async with rd.client.pipeline(transaction=False) as pipe:
                for tp, o in offsets.items():
                    pipe.set(mark_key(self.settings.app_id, self.topic, tp.partition), o)
                await pipe.execute()
        self.persisted += len(fresh)
        self.skipped += len(todo) - len(fresh)

    # -- introspection (tests, tools) ----------------------------------------------------

    async def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Wait until every event present on the topic now is persisted and committed."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        probe = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,
            **client_options(self.settings),
        )
        await probe.start()
        try:
            parts = probe.partitions_for_topic(self.topic)
            for _ in range(100):  # a just-created topic may be missing from the metadata
                if parts:
                    break
                await compat.refresh_metadata(probe)
                parts = probe.partitions_for_topic(self.topic)
                if not parts:
                    await asyncio.sleep(0.1)
            if not parts:
                raise RuntimeError(f"topic {self.topic} not found")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            end = await probe.end_offsets(tps) if tps else {}
        finally:
            await probe.stop()
        deadline = time.monotonic() + timeout
        while any(self.committed.get(tp.partition, 0) < off for tp, off in end.items() if off):
            if not self.alive():
                raise RuntimeError("persister is not running")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"persister behind after {timeout}s: committed {self.committed}, end "
                    f"{ {tp.partition: o for tp, o in end.items()} }"
                )
            await asyncio.sleep(0.05)


class LatestWriter(Service):
    """The latest output record per session in Redis, coalesced and written off-path."""

    def __init__(self, settings: Settings, redis: Any = None, max_pending: int = 100_000) -> None:
        super().__init__()
        self.settings = settings
        self.redis: Any = redis
        self._owned = redis is None
        self.max_pending = max_pending
        self._pending: dict[str, bytes | None] = {}  # None: delete (an expired session)
        self._wake = asyncio.Event()
        self.dropped = 0

    def put(self, session_id: str, record: bytes) -> None:
        """Remember ``record`` as the session's latest (synchronous, never blocks)."""
        if session_id not in self._pending and len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending[session_id] = record

    def delete(self, session_id: str) -> None:
        """Forget the session's latest record (it expired), in order with :meth:`put`."""
        self._pending[session_id] = None

    async def on_start(self) -> None:
        self.supervise("latest-writer", self._run)

    async def on_stop(self) -> None:
        """Write what is pending (best effort), then close the Redis opened here."""
        with contextlib.suppress(Exception):
            await self.flush()
        if self._owned and self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.stop()
            self.redis = None

    async def flush(self) -> None:
        """Write every pending record (one pipeline); on failure they are dropped."""
        if not self._pending:
            return
        if self.redis is None:
            from kato_stream.stores import RedisStore

            store = RedisStore(self.settings)
            await store.start()
            self.redis = store
        batch, self._pending = self._pending, {}
        try:
            async with self.redis.client.pipeline(transaction=False) as p:
                for sid, value in batch.items():
                    if value is None:
                        p.delete(LATEST_KEY.format(sid=sid))
                    else:
                        p.set(LATEST_KEY.format(sid=sid), value, ex=self.settings.latest_ttl)
                await p.execute()
        except Exception as exc:
            self.dropped += len(batch)
            raise exc

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.store_flush_seconds)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("writing latest records to Redis failed: %s", exc)
