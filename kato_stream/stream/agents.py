"""The command agent: the I/O loop around :class:`~kato_stream.stream.processor.Processor`.

:class:`CommandAgent` takes batches of input records (batch.py), and for each record asks the
processor what it means and sends what it asks for: pattern events, dead letter, output
record (timing in headers; a learn's answer only once its pattern event is acknowledged) and
``forward_to`` observes.  :class:`~.checkpoint.Checkpoint` then commits the batch: the one
place where the write order lives.  Beside the loop, the agent owns the timers that keep its
partitions healthy: the continuity guard's stall check, the orphaned-list sweep and session
expiry.  The agent waits for the LTM to be rebuilt before its first record.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from kato_stream import metrics
from kato_stream.compat import faust_noack_take
from kato_stream.contracts import (
    MSG_ID_HEADER,
    PATTERNS_HEADER,
    PROCESSING_HEADER,
    RECEIVED_HEADER,
    SOURCE_HEADER,
    STATUS_HEADER,
    WORKER_HEADER,
)
from kato_stream.kafka import client_options
from kato_stream.stream import codecs
from kato_stream.stream.app import fetch_bytes
from kato_stream.stream.batch import Batch, Pending
from kato_stream.stream.checkpoint import DURABLE_TIMEOUT, Checkpoint
from kato_stream.stream.continuity import (
    ContinuityTracker,
    StallWatch,
    ack_range,
    assigned_partitions,
    committed_offset,
    fetch_range,
    reseek_uncommitted,
)
from kato_stream.stream.envelope import FORWARDED_HEADER
from kato_stream.stream.expirer import SessionExpirer, applied_partition
from kato_stream.stream.expiry import is_tick
from kato_stream.stream.persisted import encode_marks
from kato_stream.stream.processor import Outcome, Processor, Source, stored_outside
from kato_stream.stream.session_lists import Retired, retired_lists, sweep

if TYPE_CHECKING:
    from kato_stream.stream.app import Worker

__all__ = ["DURABLE_TIMEOUT", "FATAL_EXIT_CODE", "WORKER_HEADER", "CommandAgent", "fatal"]

log = logging.getLogger(__name__)

SWEEP_CHUNK = 1000  # expired sessions removed between two yields to the event loop
STALL_CHECK_SECONDS = 1.0  # how often the idle-partition check runs
STALL_SECONDS = 3.0  # the agent idle this long: its input partitions are looked at
STALL_WAIT_SECONDS = 2.0  # records waiting this long at the same offset = a stalled partition
FATAL_EXIT_CODE = 70  # EX_SOFTWARE: the orchestrator (or kato-stream dev) restarts the worker
FATAL_GRACE = 15.0  # seconds a failed worker gets to stop cleanly before it exits hard


def fatal(app: Any, task: str, exc: BaseException) -> None:
    """Take the worker down after ``task`` failed, so it restarts from its last commit.

    A failed batch must not be followed by later records: Faust would commit their offsets
    past the failed ones (it commits the acknowledged offsets), and their commands would run
    on state the failed ones never wrote.  So the worker stops consuming at once, tries to
    stop cleanly (leaving its group, committing only what was finished) and exits with
    ``FATAL_EXIT_CODE`` after ``FATAL_GRACE`` seconds at the latest."""
    log.critical(
        "%s failed: the worker exits and restarts from its last committed offsets",
        task,
        exc_info=exc,
    )
    metrics.observe_task_failure(task)
    timer = threading.Timer(FATAL_GRACE, os._exit, args=(FATAL_EXIT_CODE,))
    timer.daemon = True
    timer.start()
    with contextlib.suppress(Exception):
        app.consumer.pause_partitions(app.consumer.assignment())
    asyncio.ensure_future(_crash(app))


async def _crash(app: Any) -> None:
    try:
        await app.stop()  # leaves the group, commits only what was finished
    finally:
        logging.shutdown()
        os._exit(FATAL_EXIT_CODE)


def forwarded_to(headers: Any) -> str | None:
    """The node a ``forward_to`` observe goes to (its header), None for other records."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    for k, v in items:
        if k == FORWARDED_HEADER and v:
            return bytes(v).decode("utf-8", "replace").rpartition(">")[2]
    return None


def reply_headers(record: Any, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The output record's msg_id, input coordinates and status as headers (contracts.py):
    a reader picks its answers by them without decoding every record."""
    rec = record or {}
    out = [
        (SOURCE_HEADER, f"{partition}:{offset}".encode()),
        (STATUS_HEADER, str(rec.get("status")).encode()),
    ]
    mid = rec.get("msg_id")
    if isinstance(mid, str) and mid:
        out.append((MSG_ID_HEADER, mid.encode("utf-8")))
    return out


def partition_lag(app: Any, msg: Any) -> int:
    """Records still behind ``msg`` in its partition: the adaptive controller's lag signal."""
    try:
        high = app.consumer.highwater(msg.tp)
    except Exception:  # consumer rebalancing or not started: no signal
        return 0
    return max(0, int(high or 0) - int(msg.offset) - 1)


class CommandAgent:
    """The worker's command agent and the timers of its partitions (one per worker)."""

    def __init__(self, w: Worker) -> None:
        self.w = w
        self.processor = w.processor
        self.sessions = w.sessions
        self.input_name = w.settings.topic("observations")
        self.worker_id = f"{w.settings.app_id}/{socket.gethostname()}/{os.getpid()}".encode()
        self.continuity = ContinuityTracker()
        self.retired = Retired()
        self.watch = StallWatch()
        self.expirer: SessionExpirer | None = None
        if self.processor.session_ttl is not None:
            self.expirer = SessionExpirer(
                app=w.app,
                sessions=w.sessions,
                input_topic=w.input_topic,
                input_name=self.input_name,
                default_ttl=self.processor.session_ttl,
                grace_seconds=w.settings.session_expiry_grace,
                sweep_seconds=w.settings.session_sweep_seconds,
                lists=w.lists,
                latest=w.latest,
            )
        self.checkpoint = Checkpoint(
            sessions=w.sessions,
            retired=self.retired,
            ack_range=lambda tp, start, end: ack_range(w.app, tp.topic, tp.partition, start, end),
            committed=lambda tp: committed_offset(w.app, tp),
            lists=w.lists,
            latest=w.latest,
            expirer=self.expirer,
        )
        self.idle_since = time.monotonic()
        self.in_batch = False
        self.sweep_due = True  # orphaned lists: before the next batch after an assignment
        self.rescan_due = True  # expiry index: once the assigned partitions are recovered
        self.last_expiry = 0.0

    def register(self) -> None:
        """Attach the agent, its timers and its rebalance hook to the worker's app."""
        app = self.w.app
        reseek_uncommitted({self.input_name})  # Faust's recovery race at the tail
        app.timer(interval=STALL_CHECK_SECONDS)(self.retire_after_commit)
        app.timer(interval=STALL_CHECK_SECONDS)(self.unstick)
        if self.expirer is not None:
            app.timer(interval=self.w.settings.session_sweep_seconds)(self.expire_sessions)
        app.on_partitions_assigned.connect(self.on_assigned)
        app.agent(self.w.input_topic, name="kato-commands")(self.commands)

    # -- the loop ---------------------------------------------------------------------------

    async def commands(self, stream: Any) -> None:
        try:
            await self.run(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not raised to Faust: it would restart the agent on the records after the
            # failed batch and commit past it.  fatal() takes the worker down instead.
            fatal(self.w.app, "agent", exc)
            await asyncio.Event().wait()

    async def run(self, stream: Any) -> None:
        w = self.w
        await w.follower.ready.wait()
        # The rebuilt LTM is ~10 objects per pattern that live as long as the worker: keep them
        # out of the cyclic GC's full collections (40-80 ms pauses at 10k patterns otherwise).
        gc.freeze()
        batch = Batch(self.sessions, w.lists, stream)
        # noack: an input offset is acknowledged (committable) only by the checkpoint, after
        # its outputs and table value; take_events would ack a batch cut short by a shutdown
        # or an error too, and its unwritten table values would be skipped for good.  (compat:
        # Faust's noack_take without its idle wake-ups every batch window.)
        async for events in faust_noack_take(
            stream, w.settings.agent_batch, w.settings.agent_batch_within
        ):
            self.idle_since = time.monotonic()
            self.in_batch = True
            if self.sweep_due:  # between batches: no list is staged for a table write
                await self.sweep_orphans()
            for event in events:
                await self.on_event(batch, event)
            await self.checkpoint.commit(batch)
            self.in_batch = False
            self.idle_since = time.monotonic()
            if time.monotonic() - self.last_expiry >= w.settings.session_sweep_seconds:
                await self.expire(idle=False)

    async def on_event(self, batch: Batch, event: Any) -> None:
        """One input record of the batch (and the records of a hole before it)."""
        msg = event.message
        tp = msg.tp
        continuity = self.continuity
        if not continuity.knows(tp.partition):
            continuity.expect(tp.partition, committed_offset(self.w.app, tp))
        forwarded = forwarded_to(msg.headers)
        if forwarded is not None and msg.timestamp:
            metrics.observe_forward_lag(forwarded, time.time() - msg.timestamp)
        gap = continuity.hole(tp.partition, msg.offset)
        if gap is not None:
            await self.fill_hole(batch, event, tp, *gap)
        elapsed = await self.prepare(
            batch, event, msg.key, msg.value, msg.topic, msg.partition, msg.offset, msg.timestamp
        )
        batch.events.append(event)
        continuity.done(tp.partition, msg.offset)
        if self.w.adaptive is not None and elapsed is not None:  # per record: the next
            self.w.adaptive.update(partition_lag(self.w.app, msg), elapsed, time.monotonic())

    async def prepare(
        self,
        batch: Batch,
        event: Any,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        timestamp: float,
    ) -> float | None:
        """Process one input record and send its outputs (acknowledged by the checkpoint).

        ``event`` is the Faust event of the record's partition that brought it (for a filled
        hole, the record after the hole): its partition is the table write's.  Returns the
        engine time in seconds (None for a skipped redelivery or a tick)."""
        w, processor = self.w, self.processor
        received = time.time()
        t0 = time.perf_counter()
        source = Source(topic, partition, offset)
        if self.expirer is not None:
            self.expirer.record(partition, timestamp, is_tick(key, value))
        ts_ms = round(timestamp * 1000)
        outcome = processor.process(key, value, source, batch.lookup, timestamp_ms=ts_ms)
        if outcome.needs and outcome.session_id is not None:
            lists = await batch.load(outcome.session_id, outcome.needs)
            outcome = processor.process(
                key, value, source, batch.lookup, loaded=lists, timestamp_ms=ts_ms
            )
        if outcome.tick:
            return None
        if outcome.duplicate:
            # redelivery of an applied command (after a crash or rebalance): no effects
            log.info("skipped applied %s:%s:%s", topic, partition, offset)
            return None
        elapsed = time.perf_counter() - t0
        if outcome.pattern_events:
            # A learn must not reach kato.patterns while earlier commands are unwritten: after
            # a crash they would be redone against an LTM that already holds it.  So the batch
            # so far is committed first (it was computed without it), and the changelog
            # records of every table write so far, which Faust only buffers, acknowledged.
            if batch.pending:
                await self.checkpoint.commit(batch)
            await self.sessions.durable()
        out_value, stored = self._encode(outcome)
        headers = [
            (PROCESSING_HEADER, f"{elapsed:.6f}".encode()),
            (RECEIVED_HEADER, f"{received:.6f}".encode()),
            (WORKER_HEADER, self.worker_id),
            *reply_headers(outcome.record, partition, offset),
        ]
        futures = await self._send(outcome, key, out_value, headers)
        pending = Pending(outcome, futures, stored, out_value, elapsed, event, offset)
        if w.lists is not None:
            pending.retire = retired_lists(batch.lookup(outcome.session_id or ""), outcome)
        batch.add(pending)
        return elapsed

    def _encode(self, outcome: Outcome) -> tuple[bytes, dict[str, tuple[str, bytes]] | None]:
        """(the output record's bytes, the session's new lists for Redis as (id, bytes)).

        The lists and the output record hold the same predictions: encoded once
        (codecs.dumps_sharing).  The lists are written to Redis with the whole batch's
        (checkpoint step 1)."""
        observed = outcome.observed if self.w.lists is not None and outcome.session_id else None
        out_value, encoded = codecs.dumps_sharing(
            outcome.record, {name: items for name, (_, items) in (observed or {}).items()}
        )
        if not observed:
            return out_value, None
        return out_value, {name: (ident, encoded[name]) for name, (ident, _) in observed.items()}

    async def _send(
        self, outcome: Outcome, key: bytes | None, out_value: bytes, headers: list[Any]
    ) -> list[Any]:
        """Send a command's records, in order: its pattern events, its dead letter, its output
        record (``headers``), its forwards up the node chain.  Returns their delivery futures
        (acknowledged by the checkpoint)."""
        w = self.w
        futures = [
            await w.patterns_topic.send(key=node_id.encode("utf-8"), value=raw)
            for node_id, raw in outcome.pattern_events
        ]
        if futures:
            # the learn's answer only once its event is on kato.patterns: whoever reads the
            # topic after seeing the answer finds the learn (the gateway's pattern reads);
            # its coordinates tell a reader when the stores hold it (persisted.py)
            metas = await asyncio.gather(*futures)
            headers.append((PATTERNS_HEADER, encode_marks((m.partition, m.offset) for m in metas)))
        if outcome.dead_letter is not None:
            futures.append(await w.dlq_topic.send(key=key, value=codecs.dumps(outcome.dead_letter)))
        if len(out_value) > w.settings.max_output_bytes and outcome.record is not None:
            # a record the broker would refuse must not crash the agent (and again on every
            # redelivery): publish it without its predictions, saying so
            out_value = codecs.dumps(
                Processor.truncate(outcome.record, len(out_value), w.settings.max_output_bytes)
            )
        futures.append(await w.output_topic.send(key=outcome.key, value=out_value, headers=headers))
        for fw in outcome.forwards:  # up the node chain, after the command's own outputs
            link = f"{fw.from_node}>{fw.to_node}".encode()
            futures.append(
                await w.input_topic.send(
                    key=fw.key, value=fw.value, headers=[(FORWARDED_HEADER, link)]
                )
            )
        return futures

    async def fill_hole(self, batch: Batch, event: Any, tp: Any, start: int, end: int) -> None:
        """Process the records of ``[start, end)`` that the consumer skipped (continuity.py);
        their offsets are acknowledged with the batch (checkpoint step 5)."""
        log.warning(
            "offsets %s..%s of %s were skipped by the consumer: filling", start, end - 1, tp
        )
        metrics.observe_offset_hole(end - start)
        records = await fetch_range(
            self.w.settings.kafka_bootstrap,
            tp.topic,
            tp.partition,
            start,
            end,
            max_fetch_bytes=fetch_bytes(self.w.settings),
            kafka_options=client_options(self.w.settings),
        )
        for r in records:
            await self.prepare(
                batch,
                event,
                r.key,
                r.value,
                r.topic,
                r.partition,
                r.offset,
                (r.timestamp or 0) / 1000,
            )
        batch.holes.append((tp, start, end))

    # -- the timers ---------------------------------------------------------------------------

    async def on_assigned(self, app: Any, /, *_: Any, **__: Any) -> None:
        # positional-only: mode's handler type is (sender, /, *args, signal=..., **kwargs)
        self.continuity.reset()  # the next record of each partition is checked against its commit
        self.sweep_due = True  # before the next batch (the table is recovered by then)
        self.rescan_due = True

    async def retire_after_commit(self) -> None:
        """Commits also happen while the agent is idle: drop what they made deletable."""
        await self.checkpoint.drop_retired()

    async def unstick(self) -> None:
        """Re-seek input partitions whose remaining records the consumer will never deliver
        (continuity.StallWatch); a no-op while the agent is busy."""
        w, watch, continuity = self.w, self.watch, self.continuity
        idle = time.monotonic() - self.idle_since
        watch.new_generation(w.app.consumer_generation_id)
        if idle < STALL_SECONDS or not w.follower.ready.is_set() or w.app.rebalancing:
            watch.clear()  # records the agent may still get: nothing has waited yet
            return  # the common case: the agent is busy, nothing to look at
        consumer = w.app.consumer
        tps = {tp.partition: tp for tp in consumer.assignment() if tp.topic == self.input_name}
        expected: dict[int, int] = {}
        highwater: dict[int, int | None] = {}
        for p, tp in tps.items():
            want = continuity.expected(p)
            expected[p] = want if want is not None else committed_offset(w.app, tp)
            try:
                highwater[p] = consumer.highwater(tp)
            except Exception:  # not fetched yet
                highwater[p] = None
        stuck = watch.check(expected, highwater, time.monotonic(), STALL_WAIT_SECONDS)
        for p, offset in sorted(stuck.items()):
            # No record of the partition reached the agent since the assignment: the known
            # start-up race (continuity.py), once; any other stall is a warning.
            startup = not continuity.knows(p) and watch.seeks(p) == 1
            log.log(
                logging.INFO if startup else logging.WARNING,
                "partition %s:%s idle at offset %s with records up to %s for %.0f s: "
                "seeking back%s",
                self.input_name,
                p,
                offset,
                highwater[p],
                STALL_WAIT_SECONDS,
                " (no record delivered since the assignment)" if startup else "",
            )
            metrics.observe_stall()
            await consumer.seek(tps[p], offset)
        if stuck:
            self.idle_since = time.monotonic()  # give the re-fetch time before the next check

    async def sweep_orphans(self) -> None:
        """Drop the Redis lists of this worker's sessions that no table value names
        (session_lists.sweep): left by a crash, here or in the partition's previous owner."""
        self.sweep_due = False
        w = self.w
        if w.lists is None:
            return
        owned = assigned_partitions(w.app, self.input_name)
        mine = [
            (sid, stored_outside((value or {}).get("state")))
            for sid, value in list(self.sessions.items())
            if applied_partition(value, self.input_name) in owned
        ]
        try:
            n = await sweep(w.lists, mine, self.retired.pending())
        except Exception as exc:  # left in Redis: harmless, only memory; tried next time
            log.warning("sweeping orphaned session lists failed: %s", exc)
            return
        if n:
            log.info("dropped %d orphaned session lists of %d sessions", n, len(mine))

    async def expire_sessions(self) -> None:
        """Remove expired sessions and tick idle partitions (expirer.py).  A failed write
        (a tombstone the changelog refused) takes the worker down, as in the agent."""
        try:
            await self.expire(idle=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            fatal(self.w.app, "session-expiry", exc)

    async def expire(self, idle: bool) -> None:
        """Session expiry, between batches: from the loop when the agent is busy, from the
        timer when it is idle (ticks only then)."""
        w, expirer = self.w, self.expirer
        if expirer is None or self.in_batch or w.app.rebalancing:
            return
        if getattr(w.app, "in_recovery", False) or not getattr(
            w.app.tables, "actives_ready", False
        ):
            return  # the table of the assigned partitions is not recovered yet
        if self.rescan_due:
            self.rescan_due = False
            expirer.rescan()
        self.last_expiry = started = time.monotonic()
        budget = w.settings.session_sweep_seconds / 2  # the rest at the next turn
        while True:  # in chunks, each between batches
            _, more = await expirer.sweep(SWEEP_CHUNK)
            # the chunk's tombstones acknowledged before the next: a mass expiry is paced by
            # the broker instead of filling the producer's buffer (and the loop yields)
            await self.sessions.durable()
            if not more or time.monotonic() - started > budget:
                break
            if self.in_batch or w.app.rebalancing:
                return  # the agent took a batch meanwhile: the rest at the next turn
        if idle:
            await expirer.tick()


def register_agents(w: Worker) -> CommandAgent:
    """Attach the command agent to ``w.app``."""
    agent = CommandAgent(w)
    agent.register()
    return agent
