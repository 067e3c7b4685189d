"""The Kafka follower that folds ``kato.patterns`` into the registry (group-less, every
partition), and rebuilds the LTM before the agents start (``ready``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from kato_stream import compat, contracts, fetch_backoff, metrics
from kato_stream.kafka import client_options, known_options
from kato_stream.service import Service
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.ltm.bootstrap import BootstrapReport, Fallback, persisted_offsets
from kato_stream.stream.ltm.events import clear_event_dict, learn_event_dict
from kato_stream.stream.ltm.registry import LtmRegistry

log = logging.getLogger(__name__)

__all__ = ["YIELD_SECONDS", "PatternFollower"]


YIELD_SECONDS = 0.01
"""Longest the follower applies events without giving the event loop a turn: a rebuild of a
large topic must not starve the ``/live`` probe, the web server or the stream client."""


class _Pacer:
    """Gives the event loop a turn (``asyncio.sleep(0)``) once ``YIELD_SECONDS`` of work
    went by since the last one: per fetched batch, and inside a batch, which can hold
    thousands of learns."""

    def __init__(self) -> None:
        self._since = time.monotonic()

    async def breathe(self) -> None:
        if time.monotonic() - self._since >= YIELD_SECONDS:
            await asyncio.sleep(0)
            self._since = time.monotonic()


class PatternFollower(Service):
    """Folds ``kato.patterns`` (all partitions, no consumer group) into an :class:`LtmRegistry`.

    ``ready`` is set once everything present at start has been applied.  ``delays`` keeps
    the last broker-timestamp-to-applied delays (seconds) of events this worker did not
    apply itself, i.e. the cross-worker visibility delay.  With ``settings`` whose
    ``ltm_bootstrap`` is ``"stores"`` the head of each partition comes from ClickHouse
    (module docstring); ``bootstrap_report`` says what ran.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        registry: LtmRegistry,
        settings: Settings | None = None,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.topic = topic
        self.registry = registry
        self.settings = settings
        if kafka_options is None:
            kafka_options = (
                known_options(bootstrap) if settings is None else client_options(settings)
            )
        self.kafka_options = kafka_options
        """Security options of its consumers (default: ``settings``')."""
        mode = getattr(settings, "ltm_bootstrap", "stream")
        self.bootstrap_report = BootstrapReport(mode=mode, ran="stream")
        self.ready = asyncio.Event()
        self.delays: list[float] = []
        self.errors = 0
        self._consumer: Any = None
        self._applied: dict[int, int] = {}
        """Partition -> offset after the last event applied (what :meth:`sync` waits for)."""

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            **self.kafka_options,
        )
        await self._consumer.start()
        if self.settings is not None:  # a tail follower: it can wait (fetch_backoff.py)
            fetch_backoff.set_pause(self._consumer, self.settings.tail_fetch_backoff)
        parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            await compat.refresh_metadata(self._consumer)
            parts = self._consumer.partitions_for_topic(self.topic) or set()
        if not parts:
            raise RuntimeError(
                f"topic {self.topic} does not exist: run `kato-stream topics create`"
            )
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        end = await self._consumer.end_offsets(tps)
        starts: dict[int, int] = {}
        if self.bootstrap_report.mode == "stores":
            try:
                starts = await self._load_from_stores(tps, end)
            except Exception as exc:
                reason = str(exc) if isinstance(exc, Fallback) else f"{type(exc).__name__}: {exc}"
                self.bootstrap_report.reason = reason
                log.warning(
                    "LTM bootstrap from the stores not possible (%s): folding %s",
                    reason,
                    self.topic,
                )
                starts = {}
        for tp in tps:
            if starts.get(tp.partition, 0) > 0:
                self._consumer.seek(tp, starts[tp.partition])
            else:
                await self._consumer.seek_to_beginning(tp)
        self.bootstrap_report.start_offsets = {
            tp.partition: starts.get(tp.partition, 0) for tp in tps
        }
        self._applied = dict(self.bootstrap_report.start_offsets)
        # supervised: a failure is logged, counted and the loop started again from the
        # offsets applied so far (supervise.py); it never ends silently
        self.supervise("ltm-follower", lambda: self._run(end, dict(self._applied)))

    # -- bootstrap from the durable stores -----------------------------------------------

    async def _load_from_stores(self, tps: list[Any], end: dict[Any, int]) -> dict[int, int]:
        """Apply ClickHouse's log below the persister's committed offsets; returns the
        partitions' start offsets (absent: fold from 0).  Raises ``Fallback``/store errors
        before touching the registry when the snapshot cannot be used."""
        from kato_stream.stores import ClickHouseStore
        from kato_stream.stream.persist import persist_group

        assert self.settings is not None  # the stores mode comes from settings
        group = persist_group(self.settings)
        committed = await persisted_offsets(
            self.bootstrap, group, tps, kafka_options=self.kafka_options
        )
        ends = {tp.partition: off for tp, off in end.items()}
        marks = {p: w for p, w in committed.items() if 0 < w <= ends.get(p, 0)}
        notes: list[str] = []
        beyond = {p: w for p, w in committed.items() if w > ends.get(p, 0)}
        if beyond:
            notes.append(f"committed offsets beyond the topic end ignored: {beyond}")
        if not marks:
            raise Fallback(f"the persister group {group} has no committed offset on {self.topic}")
        tail = await self._records_at({p: w - 1 for p, w in marks.items()})
        store = ClickHouseStore(self.settings)
        await store.start()
        try:
            entries = await store.load_log()
        finally:
            await store.stop()
        if not entries:
            raise Fallback("ClickHouse holds no learns or clears")
        unplaced = sum(1 for e in entries if e.partition < 0)
        if unplaced:
            raise Fallback(f"{unplaced} ClickHouse rows have no kato.patterns partition")
        below: dict[int, list[Any]] = {p: [] for p in marks}
        for e in entries:
            if e.partition in marks and e.seq < marks[e.partition]:
                below[e.partition].append(e)
        for p in sorted(marks):
            ids = {(e.node_id, e.ident) for e in below[p]}
            if not ids:
                notes.append(f"partition {p}: nothing in ClickHouse below {marks[p]}")
                del marks[p]
            elif tail.get(p) is not None and tail[p] not in ids:
                notes.append(f"partition {p}: event at {marks[p] - 1} missing from ClickHouse")
                del marks[p]
        if not marks:
            raise Fallback("; ".join(notes))
        staged = LtmRegistry(vector_factory=self.registry.vector_factory)
        applied = 0
        pacer = _Pacer()
        for p in sorted(marks):
            for e in sorted(below[p], key=lambda e: (e.seq, e.learn is None, e.ident)):
                await pacer.breathe()
                event: contracts.PatternEvent
                if e.learn is None:
                    event = clear_event_dict(e.node_id, e.ident)
                else:
                    event = learn_event_dict(e.learn)
                staged.apply_event(event)
                applied += 1
        self.registry.nodes.update(staged.nodes)
        self.registry.applied_events += staged.applied_events
        self.bootstrap_report.ran = "stores"
        self.bootstrap_report.store_events = applied
        self.bootstrap_report.reason = "; ".join(notes)
        return marks

    async def _records_at(self, offsets: dict[int, int]) -> dict[int, tuple[str, str] | None]:
        """(node_id, learn/clear id) of the record at each partition's offset (None when that
        offset holds no readable event: a control record or a bad event)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            **self.kafka_options,
        )
        await consumer.start()
        out: dict[int, tuple[str, str] | None] = {}
        try:
            tps = {TopicPartition(self.topic, p): off for p, off in offsets.items()}
            consumer.assign(list(tps))
            for tp, off in tps.items():
                consumer.seek(tp, off)
            deadline = time.monotonic() + 30
            while len(out) < len(tps):
                if time.monotonic() > deadline:
                    raise Fallback(f"could not read {self.topic} at {offsets} in 30s")
                batches = await consumer.getmany(timeout_ms=200, max_records=100)
                for tp, msgs in batches.items():
                    if not msgs or tp.partition in out:
                        continue
                    out[tp.partition] = None
                    if msgs[0].offset == tps[tp]:
                        with contextlib.suppress(Exception):
                            ev = codecs.loads(msgs[0].value)
                            ident = ev["learn_id"] if ev.get("type") == "learn" else ev["clear_id"]
                            out[tp.partition] = (str(ev["node_id"]), str(ident))
                    consumer.pause(tp)
        finally:
            await consumer.stop()
        return out

    async def _run(self, end: dict[Any, int], starts: dict[int, int] | None = None) -> None:
        starts = starts or {}
        pending = {tp: off for tp, off in end.items() if off > starts.get(tp.partition, 0)}
        if not pending:
            self._set_ready()
        pacer = _Pacer()
        while True:
            # getmany returns at once while the fetcher holds records (a rebuild), without
            # giving the loop a turn: the pacer does, per batch and within one
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            await pacer.breathe()
            now = time.time()
            for tp, msgs in batches.items():
                if not self.ready.is_set():
                    self.bootstrap_report.stream_events += len(msgs)
                for msg in msgs:
                    await pacer.breathe()
                    try:
                        event = codecs.loads(msg.value)
                        changed = self.registry.apply_event(event)
                    except Exception:  # a bad event must not stop replication
                        self.errors += 1
                        log.exception("bad pattern event at %s:%s", tp, msg.offset)
                        continue
                    if changed:  # another worker's learn or clear moves this node's LTM size
                        node = str(event["node_id"])
                        metrics.set_patterns(node, len(self.registry.node(node).kb.patterns))
                    if changed and self.ready.is_set():
                        self.delays.append(metrics.observe_visibility(msg.timestamp / 1000.0, now))
                        if len(self.delays) > 10_000:
                            del self.delays[:5_000]
                    if tp in pending and msg.offset + 1 >= pending[tp]:
                        del pending[tp]
                if msgs:
                    self._applied[tp.partition] = msgs[-1].offset + 1
            if pending:
                # partitions already at their end produce no records: check positions
                for tp in list(pending):
                    if await self._consumer.position(tp) >= pending[tp]:
                        del pending[tp]
            if not pending and not self.ready.is_set():
                self._set_ready()

    async def sync(self, timeout: float) -> bool:
        """Wait until every event that is on the topic now has been applied: a read of the
        registry after this sees every learn acknowledged before the call.  False if the
        follower is not running or ``timeout`` passed first (the caller reads what there is).
        """
        consumer = self._consumer
        if consumer is None or not self.alive():
            return False
        tps = list(consumer.assignment())
        try:
            end = await asyncio.wait_for(consumer.end_offsets(tps), timeout)
        except Exception:  # broker unreachable or slow: no barrier
            return False
        deadline = time.monotonic() + timeout
        while any(self._applied.get(tp.partition, 0) < off for tp, off in end.items()):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def _set_ready(self) -> None:
        r = self.bootstrap_report
        log.info(
            "LTM rebuilt: bootstrap=%s (setting %s): %d events from ClickHouse, %d from %s;"
            " %d applied; start offsets %s%s",
            r.ran,
            r.mode,
            r.store_events,
            r.stream_events,
            self.topic,
            self.registry.applied_events,
            r.start_offsets,
            f"; fallback: {r.reason}" if r.reason else "",
        )
        self.ready.set()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
