"""The command agent: the thin I/O loop around :class:`~kato_stream.stream.processor.Processor`.

Per batch of input records (batch.py): process each in order and send its pattern events,
dead letter and output record (timing in headers; a learn's output only once its pattern
event is acknowledged); wait until the broker has acknowledged them all, and only then write
the sessions' table values (reassigned, never mutated in place:
only assignment reaches the changelog) and acknowledge the input offsets.  The agent waits
for the LTM to be rebuilt before its first record.
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
import weakref
from typing import TYPE_CHECKING, Any

from faust.streams import _current_event

from kato_stream import metrics
from kato_stream.compat import faust_noack_take
from kato_stream.kafka import client_options
from kato_stream.stream import codecs
from kato_stream.stream.app import fetch_bytes
from kato_stream.stream.batch import Batch, Pending
from kato_stream.stream.continuity import (
    ContinuityTracker,
    StallWatch,
    ack_range,
    committed_offset,
    fetch_range,
    reseek_uncommitted,
)
from kato_stream.stream.envelope import FORWARDED_HEADER
from kato_stream.stream.expirer import SessionExpirer
from kato_stream.stream.expiry import is_tick
from kato_stream.stream.persisted import PATTERNS_HEADER, encode_marks
from kato_stream.stream.processor import Processor, Source, stored_outside
from kato_stream.stream.session_lists import Retired, retired_lists, settle_put, sweep

if TYPE_CHECKING:
    from kato_stream.stream.app import Worker

log = logging.getLogger(__name__)

PROCESSING_HEADER = "kato-processing-seconds"
RECEIVED_HEADER = "kato-received-at"
WORKER_HEADER = "kato-worker"
STALL_CHECK_SECONDS = 1.0  # how often the idle-partition check runs
STALL_SECONDS = 3.0  # the agent idle this long: its input partitions are looked at
STALL_WAIT_SECONDS = 2.0  # records waiting this long at the same offset = a stalled partition
DURABLE_TIMEOUT = 120.0  # longest wait for a batch's changelog records before giving up
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


def partition_lag(app: Any, msg: Any) -> int:
    """Records still behind ``msg`` in its partition: the adaptive controller's lag signal."""
    try:
        high = app.consumer.highwater(msg.tp)
    except Exception:  # consumer rebalancing or not started: no signal
        return 0
    return max(0, int(high or 0) - int(msg.offset) - 1)


def register_agents(w: Worker) -> None:
    """Attach the command agent to ``w.app``."""
    processor = w.processor
    sessions = w.sessions
    worker_id = f"{w.settings.app_id}/{socket.gethostname()}/{os.getpid()}".encode()

    continuity = ContinuityTracker()
    retired = Retired()
    input_name = w.settings.topic("observations")
    expirer = None
    if processor.session_ttl is not None:
        expirer = SessionExpirer(
            app=w.app,
            sessions=sessions,
            input_topic=w.input_topic,
            input_name=input_name,
            default_ttl=processor.session_ttl,
            grace_seconds=w.settings.session_expiry_grace,
            sweep_seconds=w.settings.session_sweep_seconds,
            lists=w.lists,
            latest=w.latest,
        )

    async def prepare(
        batch: Batch,
        event: Any,
        key: bytes | None,
        value: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        timestamp: float,
    ) -> float | None:
        """Process one input record and send its outputs (not awaited: :func:`finish`).

        ``event`` is the Faust event of the record's partition that brought it (for a filled
        hole, the record after the hole): its partition is the table write's.  Returns the
        engine time in seconds (None for a skipped redelivery or a tick)."""
        received = time.time()
        t0 = time.perf_counter()
        source = Source(topic, partition, offset)
        if expirer is not None:
            expirer.record(partition, timestamp, is_tick(key, value))
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
            # so far is finished first (it was computed without it), and the changelog
            # records of every table write so far, which Faust only buffers, acknowledged.
            if batch.pending:
                await finish(batch)
            await sessions.durable()
        # The session's new lists (for Redis) and the output record hold the same
        # predictions: encode them once (codecs.dumps_sharing).
        observed = outcome.observed if w.lists is not None and outcome.session_id else None
        out_value, encoded = codecs.dumps_sharing(
            outcome.record, {name: items for name, (_, items) in (observed or {}).items()}
        )
        stored = None
        if observed:  # written to Redis with the whole batch's (finish)
            stored = {name: (ident, encoded[name]) for name, (ident, _) in observed.items()}
        futures = [
            await w.patterns_topic.send(key=node_id.encode("utf-8"), value=raw)
            for node_id, raw in outcome.pattern_events
        ]
        headers = [
            (PROCESSING_HEADER, f"{elapsed:.6f}".encode()),
            (RECEIVED_HEADER, f"{received:.6f}".encode()),
            (WORKER_HEADER, worker_id),
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
        futures.append(
            await w.output_topic.send(
                key=outcome.key,
                value=out_value,
                headers=headers,
            )
        )
        for fw in outcome.forwards:  # up the node chain, after the command's own outputs
            link = f"{fw.from_node}>{fw.to_node}".encode()
            futures.append(
                await w.input_topic.send(
                    key=fw.key, value=fw.value, headers=[(FORWARDED_HEADER, link)]
                )
            )
        pending = Pending(outcome, futures, stored, out_value, elapsed, event, offset)
        if w.lists is not None:
            pending.retire = retired_lists(batch.lookup(outcome.session_id or ""), outcome)
        batch.add(pending)
        return elapsed

    async def finish(batch: Batch) -> None:
        """Wait for every output of the batch, then write its table values in order.

        The session's "applied up to offset" mark must never reach the changelog before the
        command's outputs are acknowledged: a crash in between would skip the redelivered
        command and lose its output or learn event for good.  (Its input offset is only
        acknowledged to Faust after this returns.)"""
        # One Redis round trip for the batch's session lists, while the acks arrive.
        staged = [(p.outcome.session_id or "", p.stored) for p in batch.pending if p.stored]
        put = None
        if staged and w.lists is not None:
            put = asyncio.ensure_future(w.lists.put_many(staged))
        await asyncio.gather(*(f for p in batch.pending for f in p.futures))
        for p in batch.pending:
            outcome = p.outcome
            if put is not None and p.stored and outcome.table_value and outcome.observed:
                await settle_put(put, outcome.table_value, outcome.observed)
            if outcome.table_value is not None and outcome.session_id is not None:
                # a Faust table writes its changelog to the partition of the current event
                _current_event.set(weakref.ref(p.event))
                sessions[outcome.session_id] = outcome.table_value
                if expirer is not None:
                    expirer.written(
                        p.event.message.partition, outcome.session_id, outcome.table_value
                    )
            for sid, name, ident in p.retire:
                retired.add(p.event.message.tp, p.offset, sid, name, ident)
            if w.latest is not None and outcome.session_id is not None and outcome.record:
                w.latest.put(outcome.session_id, p.out_value)
            rec = outcome.record or {}
            if rec.get("session_expired"):
                metrics.observe_session_expired("command")
            err = rec.get("error") or {}
            metrics.observe_command(
                str(rec.get("op")),
                str(rec.get("status")),
                p.elapsed,
                reason=str(err.get("code", "")),
            )
            if outcome.dead_letter is not None:
                metrics.observe_dlq()
            if outcome.forwards:
                metrics.observe_forwarded(outcome.forwards[0].to_node, len(outcome.forwards))
            threshold = rec.get("recall_threshold")
            if threshold is not None:
                metrics.set_recall_threshold(str(rec.get("node_id")), float(threshold))
        _current_event.set(None)
        # The table values' changelog records must be on the broker before their inputs
        # become committable: a failed write raises here (the agent then takes the worker
        # down, fatal()), and the redelivered commands are redone, never skipped.
        await asyncio.wait_for(sessions.durable(), DURABLE_TIMEOUT)
        for tp, start, end in batch.holes:
            ack_range(w.app, tp.topic, tp.partition, start, end)
        for event in batch.events:  # committable from now on
            await batch.stream.ack(event)
        batch.clear()
        await drop_retired()

    async def drop_retired() -> None:
        """Drop the stored lists replaced by commands whose offsets are committed now."""
        if w.lists is None or not len(retired):
            return
        due = retired.due(lambda tp: committed_offset(w.app, tp))
        if due:
            try:
                await w.lists.forget(due)
            except Exception as exc:  # left in Redis: harmless, only memory
                log.warning("dropping %d retired session lists failed: %s", len(due), exc)

    async def fill_hole(batch: Batch, event: Any, tp: Any, start: int, end: int) -> None:
        """Process the records of ``[start, end)`` that the consumer skipped (continuity.py);
        their offsets are acknowledged with the batch (:func:`finish`)."""
        log.warning(
            "offsets %s..%s of %s were skipped by the consumer: filling", start, end - 1, tp
        )
        metrics.observe_offset_hole(end - start)
        records = await fetch_range(
            w.settings.kafka_bootstrap,
            tp.topic,
            tp.partition,
            start,
            end,
            max_fetch_bytes=fetch_bytes(w.settings),
            kafka_options=client_options(w.settings),
        )
        for r in records:
            await prepare(batch, event, r.key, r.value, r.topic, r.partition, r.offset, r.timestamp)
        batch.holes.append((tp, start, end))

    idle_since = [time.monotonic()]

    @w.app.timer(interval=STALL_CHECK_SECONDS)
    async def retire_after_commit() -> None:
        """Commits also happen while the agent is idle: drop what they made deletable."""
        await drop_retired()

    reseek_uncommitted({input_name})  # Faust's recovery race at the tail (continuity.py)
    watch = StallWatch()

    @w.app.timer(interval=STALL_CHECK_SECONDS)
    async def unstick() -> None:
        """Re-seek input partitions whose remaining records the consumer will never deliver
        (continuity.StallWatch); a no-op while the agent is busy."""
        idle = time.monotonic() - idle_since[0]
        watch.new_generation(w.app.consumer_generation_id)
        if idle < STALL_SECONDS or not w.follower.ready.is_set() or w.app.rebalancing:
            watch.clear()  # records the agent may still get: nothing has waited yet
            return  # the common case: the agent is busy, nothing to look at
        consumer = w.app.consumer
        tps = {tp.partition: tp for tp in consumer.assignment() if tp.topic == input_name}
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
                input_name,
                p,
                offset,
                highwater[p],
                STALL_WAIT_SECONDS,
                " (no record delivered since the assignment)" if startup else "",
            )
            metrics.observe_stall()
            await consumer.seek(tps[p], offset)
        if stuck:
            idle_since[0] = time.monotonic()  # give the re-fetch time before the next check

    sweep_due = [True]

    async def sweep_orphans() -> None:
        """Drop the Redis lists of this worker's sessions that no table value names
        (session_lists.sweep): left by a crash, here or in the partition's previous owner."""
        sweep_due[0] = False
        if w.lists is None:
            return
        owned = {tp.partition for tp in w.app.consumer.assignment() if tp.topic == input_name}
        mine = []
        for sid, value in list(sessions.items()):
            applied = (value or {}).get("applied") or {}
            if applied.get("topic") == input_name and applied.get("partition") in owned:
                mine.append((sid, stored_outside((value or {}).get("state"))))
        try:
            n = await sweep(w.lists, mine, retired.pending())
        except Exception as exc:  # left in Redis: harmless, only memory; tried next time
            log.warning("sweeping orphaned session lists failed: %s", exc)
            return
        if n:
            log.info("dropped %d orphaned session lists of %d sessions", n, len(mine))

    # Session expiry (expirer.py): sweeps run between batches, from the agent when it is
    # busy and from this timer when it is idle; ticks only from the timer.
    expiry = {"rescan": True, "in_batch": False, "last": 0.0}

    async def expire(idle: bool) -> None:
        if expirer is None or expiry["in_batch"] or w.app.rebalancing:
            return
        if getattr(w.app, "in_recovery", False) or not getattr(
            w.app.tables, "actives_ready", False
        ):
            return  # the table of the assigned partitions is not recovered yet
        if expiry["rescan"]:
            expiry["rescan"] = False
            expirer.rescan()
        expiry["last"] = time.monotonic()
        await expirer.sweep()
        if idle:
            await expirer.tick()

    if expirer is not None:

        @w.app.timer(interval=w.settings.session_sweep_seconds)
        async def expire_sessions() -> None:
            """Remove expired sessions and tick idle partitions (expirer.py)."""
            await expire(idle=True)

    @w.app.on_partitions_assigned.connect
    async def on_assigned(app: Any, assigned: Any, **_: Any) -> None:
        continuity.reset()  # the next record of each partition is checked against its commit
        sweep_due[0] = True  # before the next batch (the table is recovered by then)
        expiry["rescan"] = True

    @w.app.agent(w.input_topic, name="kato-commands")
    async def commands(stream: Any) -> None:
        try:
            await run(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not raised to Faust: it would restart the agent on the records after the
            # failed batch and commit past it.  fatal() takes the worker down instead.
            fatal(w.app, "agent", exc)
            await asyncio.Event().wait()

    async def run(stream: Any) -> None:
        await w.follower.ready.wait()
        # The rebuilt LTM is ~10 objects per pattern that live as long as the worker: keep them
        # out of the cyclic GC's full collections (40-80 ms pauses at 10k patterns otherwise).
        gc.freeze()
        batch = Batch(sessions, w.lists, stream)
        # noack_take: an input offset is acknowledged (committable) only after finish(), i.e.
        # after its outputs and table value; take_events would ack a batch cut short by a
        # shutdown or an error too, and its unwritten table values would be skipped for good.
        # (compat: Faust's noack_take without its idle wake-ups every batch window)
        async for events in faust_noack_take(
            stream, w.settings.agent_batch, w.settings.agent_batch_within
        ):
            idle_since[0] = time.monotonic()
            expiry["in_batch"] = True
            if sweep_due[0]:  # between batches: no list is staged for a table write
                await sweep_orphans()
            for event in events:
                msg = event.message
                tp = msg.tp
                if not continuity.knows(tp.partition):
                    continuity.expect(tp.partition, committed_offset(w.app, tp))
                forwarded = forwarded_to(msg.headers)
                if forwarded is not None and msg.timestamp:
                    metrics.observe_forward_lag(forwarded, time.time() - msg.timestamp)
                gap = continuity.hole(tp.partition, msg.offset)
                if gap is not None:
                    await fill_hole(batch, event, tp, *gap)
                elapsed = await prepare(
                    batch,
                    event,
                    msg.key,
                    msg.value,
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    msg.timestamp,
                )
                batch.events.append(event)
                continuity.done(tp.partition, msg.offset)
                if w.adaptive is not None and elapsed is not None:  # per record: the next
                    w.adaptive.update(partition_lag(w.app, msg), elapsed, time.monotonic())
            await finish(batch)
            expiry["in_batch"] = False
            idle_since[0] = time.monotonic()
            if time.monotonic() - expiry["last"] >= w.settings.session_sweep_seconds:
                await expire(idle=False)
