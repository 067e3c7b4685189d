"""The command agent: the thin I/O loop around :class:`~kato_stream.stream.processor.Processor`.

Per input record: send the pattern events, the dead letter and the output record (timing in
headers), wait until the broker has acknowledged them, and only then write the session's
table value (reassigned, never mutated in place: only assignment reaches the changelog).  The agent waits for the LTM to be rebuilt before its first record.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from kato_stream import metrics
from kato_stream.stream import codecs
from kato_stream.stream.app import fetch_bytes
from kato_stream.stream.continuity import (
    ContinuityTracker,
    ack_range,
    committed_offset,
    fetch_range,
    stalled_partitions,
)
from kato_stream.stream.processor import Processor, Source

if TYPE_CHECKING:
    from kato_stream.stream.app import Worker

log = logging.getLogger(__name__)

PROCESSING_HEADER = "kato-processing-seconds"
RECEIVED_HEADER = "kato-received-at"
WORKER_HEADER = "kato-worker"
STALL_CHECK_SECONDS = 1.0  # how often the idle-partition check runs
STALL_SECONDS = 3.0  # agent idle this long with records waiting = a stalled partition


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

    def lookup(session_id: str) -> Any:
        return sessions.get(session_id)

    async def handle(
        key: bytes | None, value: bytes | None, topic: str, partition: int, offset: int
    ) -> float | None:
        """Process one input record: outputs acknowledged first, then the table write.

        Returns the engine time in seconds (None for a skipped redelivery)."""
        received = time.time()
        t0 = time.perf_counter()
        outcome = processor.process(key, value, Source(topic, partition, offset), lookup)
        if outcome.duplicate:
            # redelivery of an applied command (after a crash or rebalance): no effects
            log.info("skipped applied %s:%s:%s", topic, partition, offset)
            return None
        elapsed = time.perf_counter() - t0
        futures = [
            await w.patterns_topic.send(key=node_id.encode("utf-8"), value=codecs.dumps(pe))
            for node_id, pe in outcome.pattern_events
        ]
        if outcome.dead_letter is not None:
            futures.append(await w.dlq_topic.send(key=key, value=codecs.dumps(outcome.dead_letter)))
        out_value = codecs.dumps(outcome.record)
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
                headers=[
                    (PROCESSING_HEADER, f"{elapsed:.6f}".encode()),
                    (RECEIVED_HEADER, f"{received:.6f}".encode()),
                    (WORKER_HEADER, worker_id),
                ],
            )
        )
        # The session's "applied up to offset" mark must never reach the changelog before
        # the command's outputs are acknowledged: a crash in between would skip the
        # redelivered command and lose its output or learn event for good.
        await asyncio.gather(*futures)
        if outcome.table_value is not None and outcome.session_id is not None:
            sessions[outcome.session_id] = outcome.table_value
        if w.latest is not None and outcome.session_id is not None and outcome.record:
            w.latest.put(outcome.session_id, out_value)
        rec = outcome.record or {}
        err = rec.get("error") or {}
        metrics.observe_command(
            str(rec.get("op")), str(rec.get("status")), elapsed, reason=str(err.get("code", ""))
        )
        if outcome.dead_letter is not None:
            metrics.observe_dlq()
        threshold = rec.get("recall_threshold")
        if threshold is not None:
            metrics.set_recall_threshold(str(rec.get("node_id")), float(threshold))
        return elapsed

    async def fill_hole(tp: Any, start: int, end: int) -> None:
        """Process the records of ``[start, end)`` that the consumer skipped (continuity.py)."""
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
        )
        for r in records:
            await handle(r.key, r.value, r.topic, r.partition, r.offset)
        ack_range(w.app, tp.topic, tp.partition, start, end)

    idle_since = [time.monotonic()]
    input_name = w.settings.topic("observations")

    @w.app.timer(interval=STALL_CHECK_SECONDS)
    async def unstick() -> None:
        """Re-seek input partitions whose remaining records the consumer will never deliver
        (continuity.stalled_partitions); a no-op while the agent is busy."""
        idle = time.monotonic() - idle_since[0]
        if idle < STALL_SECONDS or not w.follower.ready.is_set() or w.app.rebalancing:
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
        stuck = stalled_partitions(expected, highwater, idle, STALL_SECONDS)
        for p, offset in sorted(stuck.items()):
            log.warning(
                "partition %s:%s idle at offset %s with records up to %s: seeking back",
                input_name,
                p,
                offset,
                highwater[p],
            )
            metrics.observe_stall()
            await consumer.seek(tps[p], offset)
        if stuck:
            idle_since[0] = time.monotonic()  # give the re-fetch time before the next check

    @w.app.on_partitions_assigned.connect
    async def on_assigned(app: Any, assigned: Any, **_: Any) -> None:
        continuity.reset()  # the next record of each partition is checked against its commit

    @w.app.agent(w.input_topic, name="kato-commands")
    async def commands(stream: Any) -> None:
        await w.follower.ready.wait()
        # The rebuilt LTM is ~10 objects per pattern that live as long as the worker: keep them
        # out of the cyclic GC's full collections (40-80 ms pauses at 10k patterns otherwise).
        gc.freeze()
        async for event in stream.events():
            msg = event.message
            tp = msg.tp
            idle_since[0] = time.monotonic()
            if not continuity.knows(tp.partition):
                continuity.expect(tp.partition, committed_offset(w.app, tp))
            gap = continuity.hole(tp.partition, msg.offset)
            if gap is not None:
                await fill_hole(tp, *gap)
            elapsed = await handle(msg.key, msg.value, msg.topic, msg.partition, msg.offset)
            continuity.done(tp.partition, msg.offset)
            idle_since[0] = time.monotonic()
            if w.adaptive is not None and elapsed is not None:
                w.adaptive.update(partition_lag(w.app, msg), elapsed, time.monotonic())
