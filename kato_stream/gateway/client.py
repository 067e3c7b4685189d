"""The gateway's stream client: one command envelope out, its output record back.

Every write (and every read of session state) goes through the input topic so that a
session's commands keep one order and survive worker restarts (docs/contracts.md §2).
The client publishes the envelope keyed by session id and waits for the record on the
predictions topic that carries the same ``msg_id``.

Its consumer has no group: it is assigned every partition of the predictions topic and
starts at the end, so several gateway replicas each see every record (a record that no
replica waits for is skipped cheaply).  Positions are resolved before ``start`` returns,
so no record of a request sent after start can be missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


class StreamTimeout(Exception):
    """No output record arrived for a command within the timeout."""


class StreamUnavailable(Exception):
    """The client is not started (or has stopped)."""


def new_msg_id(prefix: str) -> str:
    """A request-unique message id, e.g. ``obs-<uuid4 hex>`` (KATO's observation id form)."""
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass
class StreamClient:
    """Publishes command envelopes and awaits their output records (a service: start/stop)."""

    bootstrap: str
    input_topic: str
    output_topic: str
    timeout: float = 30.0
    _producer: AIOKafkaProducer | None = field(default=None, init=False, repr=False)
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(
        default_factory=dict, init=False, repr=False
    )

    async def start(self) -> None:
        """Connect, assign every output partition at its end, then start reading."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=0, enable_idempotence=False
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=5,
        )
        await producer.start()
        try:
            await consumer.start()
            parts = await self._partitions(consumer)
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            for tp in parts:  # resolve now: records produced after start() are all seen
                await consumer.position(tp)
        except BaseException:
            await producer.stop()
            await consumer.stop()
            raise
        self._producer, self._consumer = producer, consumer
        self._task = asyncio.create_task(self._read_loop(), name="gateway-stream-reader")

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + 30
        while True:
            ids = consumer.partitions_for_topic(self.output_topic)
            if ids:
                return [TopicPartition(self.output_topic, p) for p in sorted(ids)]
            if time.monotonic() > deadline:
                raise StreamUnavailable(f"topic {self.output_topic} not found")
            await consumer._client.force_metadata_update()  # noqa: SLF001 (aiokafka has no public call)
            await asyncio.sleep(0.2)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def info(self) -> dict[str, Any]:
        """Connection state for ``GET /connection-pools``."""
        parts = self._consumer.assignment() if self._consumer is not None else set()
        return {
            "bootstrap": self.bootstrap,
            "running": self.running,
            "producer_started": self._producer is not None,
            "input_topic": self.input_topic,
            "output_topic": self.output_topic,
            "output_partitions_assigned": sorted(tp.partition for tp in parts),
            "pending_requests": len(self._pending),
            "request_timeout_seconds": self.timeout,
        }

    async def stop(self) -> None:
        """Stop reading, fail every waiting request, close both connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(StreamUnavailable("gateway stream client stopped"))
        self._pending.clear()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _read_loop(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker hiccup must not kill the reader
                log.exception("predictions consumer error; retrying")
                await asyncio.sleep(0.5)
                continue
            if not self._pending:
                continue
            for records in batches.values():
                for rec in records:
                    self._deliver(rec.value)

    def _deliver(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            out = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        fut = self._pending.get(out.get("msg_id") or "") if isinstance(out, dict) else None
        if fut is not None and not fut.done():
            fut.set_result(out)

    async def request(
        self,
        op: str,
        session_id: str,
        node_id: str,
        payload: dict[str, Any] | None = None,
        *,
        msg_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Publish one command and return its output record; ``StreamTimeout`` if none came."""
        if self._producer is None:
            raise StreamUnavailable("gateway stream client not started")
        mid = msg_id or new_msg_id(op)
        envelope = {
            "op": op,
            "session_id": session_id,
            "node_id": node_id,
            "msg_id": mid,
            "payload": payload or {},
        }
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[mid] = fut
        try:
            await self._producer.send_and_wait(
                self.input_topic, orjson.dumps(envelope), key=session_id.encode()
            )
            return await asyncio.wait_for(fut, timeout or self.timeout)
        except TimeoutError:
            raise StreamTimeout(
                f"no record for {op} {mid} within {timeout or self.timeout}s"
            ) from None
        finally:
            self._pending.pop(mid, None)

    async def publish(self, envelope: dict[str, Any], key: str) -> None:
        """Fire-and-forget publish (used for ``close`` of expired sessions)."""
        if self._producer is None:
            raise StreamUnavailable("gateway stream client not started")
        await self._producer.send_and_wait(
            self.input_topic, orjson.dumps(envelope), key=key.encode()
        )
