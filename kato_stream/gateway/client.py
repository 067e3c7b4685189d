"""The gateway's stream client: one command envelope out, its output record back.

Every write (and every read of session state) goes through the input topic so that a
session's commands keep one order and survive worker restarts (docs/contracts.md §2).
The client publishes the envelope keyed by session id and waits for the record on the
predictions topic that answers it: the one carrying the same ``msg_id`` or, for a rejection
that could not name the ``msg_id`` (an envelope the worker could not read), the one whose
``source`` is the input record's topic, partition and offset.

Nothing is published that the worker would refuse for its size: an envelope larger than
the worker's limit (``Settings.max_message_bytes``) raises :class:`EnvelopeTooLarge`, and a
payload JSON cannot carry (an integer beyond 64 bits, nesting too deep, a lone surrogate)
raises :class:`PayloadNotEncodable`, both before anything is sent.

Its consumer has no group: it is assigned every partition of the predictions topic and
starts at the end, so several gateway replicas each see every record (a record that no
replica waits for is skipped cheaply).  Positions are resolved before ``start`` returns,
so no record of a request sent after start can be missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from kato_stream import compat, fetch_backoff, metrics
from kato_stream.contracts import MSG_ID_HEADER, SOURCE_HEADER, STATUS_HEADER
from kato_stream.service import Service
from kato_stream.stream.persisted import PATTERNS_HEADER, PersistWaiter, parse_marks

log = logging.getLogger(__name__)

#: Where _deliver puts a record's pattern coordinates for exchange() (removed there).
MARKS = "\x00pattern_marks"


class StreamTimeout(Exception):
    """No output record arrived for a command within the timeout."""


class StreamUnavailable(Exception):
    """The client is not started (or has stopped)."""


class EnvelopeTooLarge(Exception):
    """The command envelope is larger than the worker accepts; nothing was published."""

    def __init__(self, op: str, size: int, limit: int) -> None:
        super().__init__(
            f"The {op} command would be {size} bytes, the stream processor accepts at most "
            f"{limit} bytes (KATO_STREAM_MAX_MESSAGE_BYTES)"
        )
        self.size = size
        self.limit = limit


class PayloadNotEncodable(ValueError):
    """The payload has a value JSON cannot carry to the worker; nothing was published."""


#: Records kept that answered a command without naming its ``msg_id`` and were read before
#: the command's offset was known (its waiter looks here first).
ORPHANS = 256
#: Room for the key and the record's framing above the envelope in a produce request.
RECORD_OVERHEAD = 65_536


def new_msg_id(prefix: str) -> str:
    """A request-unique message id, e.g. ``obs-<uuid4 hex>`` (KATO's observation id form)."""
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass(eq=False)
class StreamClient(Service):
    """Publishes command envelopes and awaits their output records (a service: start/stop)."""

    bootstrap: str
    input_topic: str
    output_topic: str
    timeout: float = 30.0
    max_bytes: int = 1_048_576
    """Largest envelope the worker accepts (``Settings.max_message_bytes``)."""
    max_output_bytes: int = 1_000_000
    """Largest output record the worker publishes (``Settings.max_output_bytes``)."""
    _producer: AIOKafkaProducer | None = field(default=None, init=False, repr=False)
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False, repr=False)
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _by_source: dict[tuple[int, int], asyncio.Future[dict[str, Any]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _orphans: OrderedDict[tuple[int, int], dict[str, Any]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _inflight: int = field(default=0, init=False, repr=False)
    decoded: int = field(default=0, init=False, repr=False)
    """Output records decoded (the ones that may answer a waiting command)."""
    skipped: int = field(default=0, init=False, repr=False)
    """Output records skipped by their headers, undecoded (other clients' answers)."""
    persisted: PersistWaiter | None = None
    """If set, a command that learned is answered only once its patterns are in the stores
    (persisted.py): KATO's read-your-writes for its clients."""
    persist_timeout: float = 10.0
    """Longest wait for the stores; after it the answer goes out (logged)."""
    kafka_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Security options of both clients (:func:`kato_stream.kafka.client_options`; they may
    hold the SASL password: kept out of ``repr``)."""

    def __post_init__(self) -> None:
        Service.__init__(self)

    async def on_start(self) -> None:
        """Connect, assign every output partition at its end, then start reading."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=0,
            enable_idempotence=False,
            max_request_size=max(1_048_576, self.max_bytes + RECORD_OVERHEAD),
            **self.kafka_options,
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=max(1_048_576, 2 * self.max_output_bytes),
            **self.kafka_options,
        )
        await producer.start()
        try:
            await consumer.start()
            parts = await self._partitions(consumer)
            consumer.assign(parts)
            # a command sent ends the idle-fetch pause of the consumer awaiting its answer
            fetch_backoff.link(self.input_topic, self.output_topic, replies=True)
            await consumer.seek_to_end(*parts)
            for tp in parts:  # resolve now: records produced after start() are all seen
                await consumer.position(tp)
        except BaseException:
            await producer.stop()
            await consumer.stop()
            raise
        self._producer, self._consumer = producer, consumer
        # supervised: a failure in it is logged, counted and the loop restarted (a dead
        # reader would time every request out, silently)
        self.supervise("gateway-stream-reader", self._read_loop)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + 30
        while True:
            ids = consumer.partitions_for_topic(self.output_topic)
            if ids:
                return [TopicPartition(self.output_topic, p) for p in sorted(ids)]
            if time.monotonic() > deadline:
                raise StreamUnavailable(f"topic {self.output_topic} not found")
            await compat.refresh_metadata(consumer)
            await asyncio.sleep(0.2)

    @property
    def running(self) -> bool:
        return self.alive()

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
            "pending_requests": self._inflight,
            "request_timeout_seconds": self.timeout,
        }

    async def on_stop(self) -> None:
        """Fail every waiting request (reading has stopped), close both connections."""
        for fut in [*self._pending.values(), *self._by_source.values()]:
            if not fut.done():
                fut.set_exception(StreamUnavailable("gateway stream client stopped"))
        self._pending.clear()
        self._by_source.clear()
        self._orphans.clear()
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
            if not self._inflight:
                continue
            for records in batches.values():
                for rec in records:
                    if self._wanted(rec.headers):
                        self._deliver(rec.value, rec.headers)
                    else:
                        self.skipped += 1

    def _wanted(self, headers: Any) -> bool:
        """Whether a record may answer a waiting command, from its headers alone (the worker
        names each record's msg_id, input coordinates and status there: contracts.py).  A
        record without them (an older worker) is decoded to find out."""
        mid = where = status = None
        for name, value in headers or ():
            if name == MSG_ID_HEADER:
                mid = bytes(value).decode("utf-8", "replace")
            elif name == SOURCE_HEADER:
                where = bytes(value)
            elif name == STATUS_HEADER:
                status = bytes(value)
        if where is None:
            return True
        if mid is not None:
            return mid in self._pending
        partition, _, offset = where.partition(b":")
        try:
            coords = (int(partition), int(offset))
        except ValueError:
            return True
        # no msg_id: a rejection naming its input, perhaps ours before its offset is known
        return coords in self._by_source or status != b"ok"

    def _deliver(self, raw: bytes | None, headers: Any = ()) -> None:
        if raw is None:
            return
        self.decoded += 1
        try:
            out = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(out, dict):
            return
        for name, value in headers or ():
            if name == PATTERNS_HEADER:  # the command learned: exchange() may wait for it
                out[MARKS] = parse_marks(value)
        mid = out.get("msg_id")
        fut = self._pending.get(mid) if isinstance(mid, str) else None
        if fut is None and not mid:
            # A rejection that could not name its msg_id (the worker could not read the
            # envelope): it still names the input record it answers.
            where = self._source_of(out)
            if where is None:
                return
            fut = self._by_source.get(where)
            if fut is None:
                if out.get("status") != "ok":  # perhaps ours, before its offset is known
                    self._orphans[where] = out
                    while len(self._orphans) > ORPHANS:
                        self._orphans.popitem(last=False)
                return
        if fut is not None and not fut.done():
            fut.set_result(out)

    def _source_of(self, out: dict[str, Any]) -> tuple[int, int] | None:
        src = out.get("source")
        if not isinstance(src, dict) or src.get("topic") != self.input_topic:
            return None
        partition, offset = src.get("partition"), src.get("offset")
        if not isinstance(partition, int) or not isinstance(offset, int):
            return None
        return partition, offset

    def encode(self, envelope: dict[str, Any]) -> bytes:
        """The envelope's bytes; ``EnvelopeTooLarge`` or ``PayloadNotEncodable`` if the
        worker could not take them."""
        try:
            value = orjson.dumps(envelope)
        except orjson.JSONEncodeError as exc:
            raise PayloadNotEncodable(str(exc)) from None
        if len(value) > self.max_bytes:
            raise EnvelopeTooLarge(str(envelope.get("op")), len(value), self.max_bytes)
        return value

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
        mid = msg_id or new_msg_id(op)
        envelope = {
            "op": op,
            "session_id": session_id,
            "node_id": node_id,
            "msg_id": mid,
            "payload": payload or {},
        }
        value = self.encode(envelope)
        return await self.exchange(value, session_id.encode(), mid, timeout=timeout, op=op)

    async def exchange(
        self,
        value: bytes,
        key: bytes,
        msg_id: str | None,
        *,
        timeout: float | None = None,
        op: str = "command",
    ) -> dict[str, Any]:
        """Publish one input record and return the output record answering it: the one with
        ``msg_id``, or a rejection naming the record's coordinates."""
        if self._producer is None:
            raise StreamUnavailable("gateway stream client not started")
        limit = timeout or self.timeout
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        if msg_id:
            self._pending[msg_id] = fut
        where: tuple[int, int] | None = None
        self._inflight += 1
        try:
            t0 = time.monotonic()
            meta = await self._producer.send_and_wait(self.input_topic, value, key=key)
            acked = time.monotonic()
            where = (meta.partition, meta.offset)
            early = self._orphans.pop(where, None)
            if early is not None and not fut.done():
                fut.set_result(early)
            self._by_source[where] = fut
            out = await asyncio.wait_for(fut, limit)
            metrics.observe_exchange(op, acked - t0, time.monotonic() - acked)
        except TimeoutError:
            raise StreamTimeout(f"no record for {op} {msg_id or where} within {limit}s") from None
        finally:
            self._inflight -= 1
            if msg_id:
                self._pending.pop(msg_id, None)
            if where is not None:
                self._by_source.pop(where, None)
        marks = out.pop(MARKS, None)
        if marks and self.persisted is not None:
            t0 = time.monotonic()
            if not await self.persisted.wait(marks, self.persist_timeout):
                log.warning(
                    "%s %s: its patterns were not in the stores after %.1fs; answering anyway",
                    op,
                    msg_id,
                    self.persist_timeout,
                )
            metrics.observe_persist_wait(time.monotonic() - t0)
        return out

    async def publish(self, envelope: dict[str, Any], key: str) -> None:
        """Fire-and-forget publish (used for ``close`` of expired sessions)."""
        if self._producer is None:
            raise StreamUnavailable("gateway stream client not started")
        await self._producer.send_and_wait(
            self.input_topic, self.encode(envelope), key=key.encode()
        )
