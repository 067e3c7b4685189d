"""``kato-stream loadgen``: drive a running stack and measure throughput and end-to-end latency.

Workload (fixed by ``--seed``, so two runs send the same commands): a Zipf vocabulary of
``--vocab`` tokens (weight of token i = 1/(i+1)^0.8); ``--preload`` patterns of 2-5 events x
3-15 distinct tokens are learned first (observe each event, then ``learn``) and awaited; then
``--sessions`` sessions of one node replay stored patterns event by event with noise (each
token dropped, and a random token added, with probability ``--noise``), sending ``clear_stm``
after each pattern so the STM stays pattern-sized.

Every command carries a unique msg_id; the tool consumes the predictions topic (from its end
at start), matches records by msg_id and measures send-to-receive latency in this process
(one clock, no skew).  SLA tiers are judged on P95: critical < 10 ms, standard < 50 ms,
batch < 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from kato_stream import compat
from kato_stream.contracts import (
    MSG_ID_HEADER,
    PATTERNS_HEADER,
    PROCESSING_HEADER,
    STATUS_HEADER,
)
from kato_stream.kafka import client_options, known_options
from kato_stream.service import Service

SLA_TIERS: tuple[tuple[str, float], ...] = (
    ("critical", 10.0),
    ("standard", 50.0),
    ("batch", 200.0),
)


@dataclass(frozen=True)
class Workload:
    """Deterministic pattern set and observation stream (pure: no I/O)."""

    seed: int = 7
    vocab: int = 200
    zipf_s: float = 0.8
    noise: float = 0.1

    def tokens(self) -> list[str]:
        width = len(str(self.vocab - 1))
        return [f"t{i:0{width}d}" for i in range(self.vocab)]

    def weights(self) -> list[float]:
        return [1.0 / (i + 1) ** self.zipf_s for i in range(self.vocab)]

    def _event(self, rng: random.Random, toks: list[str], w: list[float]) -> list[str]:
        k = rng.randint(3, min(15, len(toks)))
        chosen: set[str] = set()
        while len(chosen) < k:
            chosen.update(rng.choices(toks, w, k=k - len(chosen)))
        return sorted(chosen)

    def patterns(self, k: int) -> list[list[list[str]]]:
        """``k`` patterns of 2-5 events each."""
        rng = random.Random(f"{self.seed}:patterns")
        toks, w = self.tokens(), self.weights()
        return [[self._event(rng, toks, w) for _ in range(rng.randint(2, 5))] for _ in range(k)]

    def observations(
        self, patterns: list[list[list[str]]], session: int
    ) -> Iterator[list[str] | None]:
        """Endless events for one session; ``None`` marks the end of a pattern (send clear_stm)."""
        rng = random.Random(f"{self.seed}:session:{session}")
        toks, w = self.tokens(), self.weights()
        pool = patterns or [[self._event(rng, toks, w) for _ in range(3)]]
        while True:
            for event in rng.choice(pool):
                noisy = [t for t in event if rng.random() >= self.noise]
                if rng.random() < self.noise:
                    noisy.append(rng.choices(toks, w)[0])
                yield sorted(set(noisy or event[:1]))
            yield None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    idx = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 100)) - 1))
    return sorted_values[idx]


class _Tracker:
    """Send times by msg_id, and what came back.

    A record is matched by its headers (contracts.py: the worker names its msg_id and
    status there), as the gateway matches its answers: a kato output record is ~150 KB of
    JSON, and decoding each one cost this client 2.1 ms of CPU per record on the same cores
    as the worker it measures (1.4 ms more than a pass-through record of the same size).  It
    decodes only what it reports from the body: every record that is not an ``ok`` observe
    answer (learns, rejections: their ``learned_patterns`` and status), every
    ``sample_every``-th observe answer (``observe_predictions`` is the sample's), the records
    a caller keeps, and any record without a msg_id header (another producer).
    """

    def __init__(self, sample_every: int = 8) -> None:
        self.sample_every = max(1, sample_every)
        self.sent: dict[str, float] = {}
        self.observes: set[str] = set()  # msg_ids sent as "observe"
        self.latency: dict[str, float] = {}
        self.rejected = 0
        self.duplicates = 0
        self.decoded = 0  # records whose body was decoded
        self.processing: list[float] = []
        self.record_bytes: list[int] = []
        self.observe_predictions: list[int] = []
        self.learned = 0  # names in the records' learned_patterns
        self.keep: set[str] = set()  # msg_ids whose whole record is kept in ``kept``
        self.kept: dict[str, dict[str, Any]] = {}
        self.done = asyncio.Event()
        self.progress = asyncio.Event()  # set on every matched record (window pacing)
        self.waiting_for: int | None = None
        self.first_recv = 0.0
        self.last_recv = 0.0
        self._observes_seen = 0

    def reset(self) -> None:
        """Forget everything sent and received (between two phases of one client)."""
        self.sent.clear()
        self.observes.clear()
        self.latency.clear()
        self.rejected = self.duplicates = self.decoded = 0
        self.processing.clear()
        self.record_bytes.clear()
        self.observe_predictions.clear()
        self.learned = 0
        self.keep.clear()
        self.kept.clear()
        self.first_recv = self.last_recv = 0.0
        self._observes_seen = 0

    def in_flight(self) -> int:
        return len(self.sent) - len(self.latency)

    def on_sent(self, mid: str, op: str, now: float) -> None:
        self.sent[mid] = now
        if op == "observe":
            self.observes.add(mid)

    def on_record(self, value: bytes | None, headers: Any, now: float) -> None:
        mid: str | None = None
        status: str | None = None
        learned = False
        processing: float | None = None
        for k, v in headers or ():
            if k == MSG_ID_HEADER:
                mid = bytes(v).decode("utf-8", "replace")
            elif k == STATUS_HEADER:
                status = bytes(v).decode("utf-8", "replace")
            elif k == PATTERNS_HEADER:
                learned = True
            elif k == PROCESSING_HEADER:
                with contextlib.suppress(ValueError):
                    processing = float(v)
        doc: dict[str, Any] | None = None
        if mid is None or status is None:  # not named in the headers: read the body
            doc = self._decode(value)
            if doc is None:
                return
            mid = doc.get("msg_id") if isinstance(doc.get("msg_id"), str) else None
            status = doc.get("status")
        if mid is None or (t := self.sent.get(mid)) is None:
            return  # another client's record
        if mid in self.latency:
            self.duplicates += 1
            return
        if doc is None and self._wants_body(mid, status, learned):
            doc = self._decode(value)
        self.latency[mid] = now - t
        self.first_recv = self.first_recv or now
        self.last_recv = now
        self.record_bytes.append(len(value or b""))
        if status not in (None, "ok"):
            self.rejected += 1
        if doc is not None:
            self._read_body(mid, doc)
        if processing is not None:
            self.processing.append(processing)
        self.progress.set()
        if self.waiting_for is not None and len(self.latency) >= self.waiting_for:
            self.done.set()

    def _wants_body(self, mid: str, status: str | None, learned: bool) -> bool:
        if mid in self.keep or learned or status != "ok" or mid not in self.observes:
            return True
        self._observes_seen += 1  # the 1st, then every sample_every-th
        return (self._observes_seen - 1) % self.sample_every == 0

    def _decode(self, value: bytes | None) -> dict[str, Any] | None:
        try:
            doc = orjson.loads(value) if value else None
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        self.decoded += 1
        return doc

    def _read_body(self, mid: str, doc: dict[str, Any]) -> None:
        ok_observe = doc.get("status") in (None, "ok") and doc.get("op") == "observe"
        if ok_observe and isinstance(doc.get("predictions"), list):
            self.observe_predictions.append(len(doc["predictions"]))
        learned = doc.get("learned_patterns")
        if isinstance(learned, list):
            self.learned += len(learned)
        if mid in self.keep:
            self.kept[mid] = doc


async def _consume(consumer: Any, tracker: _Tracker) -> None:
    while True:
        batch = await consumer.getmany(timeout_ms=100)
        now = time.perf_counter()
        for msgs in batch.values():
            for m in msgs:
                tracker.on_record(m.value, m.headers, now)


async def _open_consumer(bootstrap: str, topic: str, kafka_options: Mapping[str, Any]) -> Any:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # A short fetch wait: a broker that does not wake long-polls early would add up to the
    # default 500 ms to every measured latency.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        **kafka_options,
    )
    await consumer.start()
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await compat.refresh_metadata(consumer)
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer.stop()
        raise ValueError(f"output topic {topic!r} does not exist")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    for tp in tps:  # explicit positions: records produced after this point are ours to see
        consumer.seek(tp, ends[tp])
    return consumer


async def _wait(tracker: _Tracker, expected: int, timeout: float) -> None:
    tracker.waiting_for = expected
    if len(tracker.latency) >= expected:
        return
    tracker.done.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tracker.done.wait(), timeout)


def _envelope(op: str, session: str, node: str, msg_id: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"op": op, "session_id": session, "node_id": node, "msg_id": msg_id, "payload": payload}
    )


class LoadClient(Service):
    """One producer and one predictions consumer, shared by the phases of a run.

    ``send`` stamps every command with a unique msg_id and its send time; the consumer loop
    (supervised) matches the records that come back (``tracker``).  Use as ``async with``.
    """

    def __init__(
        self,
        bootstrap: str,
        input_topic: str,
        output_topic: str,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.kafka_options = known_options(bootstrap) if kafka_options is None else kafka_options
        """Security options (:func:`kato_stream.kafka.client_options`; None = those known
        for ``bootstrap``)."""
        self.input_topic = input_topic
        self.output_topic = output_topic
        self.run = uuid.uuid4().hex[:8]
        self.tracker = _Tracker()
        self._seq = iter(range(1 << 62))
        self._producer: Any = None
        self._consumer: Any = None

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaProducer

        from kato_stream import fetch_backoff

        consumer = await _open_consumer(self.bootstrap, self.output_topic, self.kafka_options)
        self._consumer = consumer
        # a command sent wakes the paused fetch of its answer (fetch_backoff, if installed)
        fetch_backoff.link(self.input_topic, self.output_topic, replies=True)
        self.supervise("loadgen-consumer", lambda: _consume(consumer, self.tracker))
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=1, acks=1, **self.kafka_options
        )
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 30)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 10)
        self._producer = self._consumer = None

    async def send(self, op: str, session: str, node: str, payload: dict[str, Any]) -> str:
        """Publish one command keyed by ``session``; returns its msg_id."""
        mid = f"lg-{self.run}-{next(self._seq)}"
        self.tracker.on_sent(mid, op, time.perf_counter())
        await self._producer.send(
            self.input_topic, _envelope(op, session, node, mid, payload), key=session.encode()
        )
        return mid

    async def flush(self) -> None:
        await self._producer.flush()

    async def wait_all(self, timeout: float) -> bool:
        """Wait until every command sent so far has its record; False on timeout."""
        await self.flush()
        await _wait(self.tracker, len(self.tracker.sent), timeout)
        return self.tracker.in_flight() == 0

    async def request(
        self, op: str, session: str, node: str, payload: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Send one command, wait for every outstanding record, return this command's record."""
        mid = await self.send(op, session, node, payload)
        self.tracker.keep.add(mid)
        if not await self.wait_all(timeout) or mid not in self.tracker.kept:
            raise TimeoutError(f"{op} on {session}: no record within {timeout}s")
        return self.tracker.kept[mid]


async def preload_patterns(
    client: LoadClient,
    node: str,
    patterns: list[list[list[str]]],
    *,
    timeout: float = 300.0,
    sessions: int = 8,
    mode: str = "observe",
    config: dict[str, Any] | None = None,
    batch: int = 100,
) -> dict[str, Any]:
    """Learn ``patterns`` on ``node`` through the input topic and wait for every record.

    ``mode``:

    * "observe": one ``observe`` per event, then ``learn`` (what the CLI does);
    * "sequence": one ``observe_sequence`` with ``learn_at_end`` per pattern;
    * "autolearn": patterns grouped by length L, each session opened with
      ``max_pattern_length`` L and ``stm_mode`` CLEAR, and ``batch`` patterns of that length
      concatenated into one ``observe_sequence``: KATO's auto-learn learns each pattern when
      its L-th event arrives and clears the STM, so one command learns ``batch`` patterns.

    ``config``, if given, is sent first as each preload session's ``open`` config (e.g.
    ``{"process_predictions": False}`` so that loading does not compute predictions).
    All three are ordinary learn commands on the stream: the worker learns, publishes and
    persists them as it would any client's.  The report counts the names in the records'
    ``learned_patterns`` (``learned``).  Raises TimeoutError when records are missing after
    ``timeout``.
    """
    if mode not in ("observe", "sequence", "autolearn"):
        raise ValueError(f"preload mode {mode!r}: observe, sequence or autolearn")
    tr = client.tracker
    tr.reset()
    t_pre = time.perf_counter()
    prefix = f"lg-{client.run}-pre-{node}"
    if mode == "autolearn":
        await _preload_autolearn(client, node, patterns, prefix, config, batch)
    else:
        await _preload_each(client, node, patterns, prefix, config, sessions, mode)
    await client.wait_all(timeout)
    report = {
        "patterns": len(patterns),
        "commands": len(tr.sent),
        "acknowledged": len(tr.latency),
        "rejected": tr.rejected,
        "learned": tr.learned,
        "seconds": round(time.perf_counter() - t_pre, 3),
        "mode": mode,
    }
    if tr.in_flight():
        raise TimeoutError(
            f"preload: {tr.in_flight()} of {len(tr.sent)} commands got no record within {timeout}s"
        )
    tr.reset()
    return report


async def _preload_autolearn(
    client: LoadClient,
    node: str,
    patterns: list[list[list[str]]],
    prefix: str,
    config: dict[str, Any] | None,
    batch: int,
) -> None:
    """Preload by auto-learn: one session per pattern length L (``max_pattern_length`` L,
    ``stm_mode`` CLEAR), ``batch`` patterns of that length per ``observe_sequence``."""
    by_len: dict[int, list[list[list[str]]]] = {}
    for pat in patterns:
        by_len.setdefault(len(pat), []).append(pat)
    for length, group in sorted(by_len.items()):
        session = f"{prefix}-L{length}"
        cfg = {**(config or {}), "max_pattern_length": length, "stm_mode": "CLEAR"}
        await client.send("open", session, node, {"config": cfg})
        for i in range(0, len(group), max(1, batch)):
            obs = [{"strings": ev} for pat in group[i : i + batch] for ev in pat]
            await client.send("observe_sequence", session, node, {"observations": obs})
            await asyncio.sleep(0)


async def _preload_each(
    client: LoadClient,
    node: str,
    patterns: list[list[list[str]]],
    prefix: str,
    config: dict[str, Any] | None,
    sessions: int,
    mode: str,
) -> None:
    """Preload pattern by pattern over ``sessions`` sessions: an ``observe_sequence`` with
    ``learn_at_end`` ("sequence") or one ``observe`` per event and a ``learn`` ("observe")."""
    n_pre = max(1, min(sessions, len(patterns)))
    names = [f"{prefix}-{i}" for i in range(n_pre)]
    if config is not None and patterns:
        for name in names:
            await client.send("open", name, node, {"config": config})
    for i, pat in enumerate(patterns):
        session = names[i % n_pre]
        if mode == "sequence":
            obs = [{"strings": event} for event in pat]
            await client.send(
                "observe_sequence", session, node, {"observations": obs, "learn_at_end": True}
            )
        else:
            for event in pat:
                await client.send("observe", session, node, {"strings": event})
            await client.send("learn", session, node, {})
        if i % 256 == 255:
            await asyncio.sleep(0)  # let the consumer task run while publishing


async def measure(
    client: LoadClient,
    node: str,
    workload: Workload,
    patterns: list[list[list[str]]],
    *,
    sessions: int = 4,
    rate: float = 0.0,
    duration: float = 10.0,
    window: int = 0,
    drain_timeout: float = 30.0,
    session_config: dict[str, Any] | None = None,
    tag: str = "",
) -> dict[str, Any]:
    """One measured phase: ``sessions`` sessions of ``node`` replay ``patterns`` with noise.

    ``rate`` > 0 paces the sends (msgs/s); 0 sends as fast as possible.  ``window`` > 0 caps
    the commands in flight (sent, no record yet): with ``rate`` 0 this saturates the worker
    without building an unbounded backlog, so throughput is its service rate and latency is
    about ``window / throughput``.  ``session_config``, if given, is each session's ``open``
    config (awaited, and checked with a ``get``: the effective config is in the report).
    ``tag`` keeps the session names of two phases of one client apart.
    """
    tr = client.tracker
    tr.reset()
    names = [f"lg-{client.run}-{tag}s{s}" for s in range(sessions)]
    extra: dict[str, Any] = {}
    if session_config is not None:
        for name in names:
            await client.send("open", name, node, {"config": session_config})
        got = await client.request("get", names[0], node, {}, drain_timeout)
        extra["effective_config"] = (got.get("response") or {}).get("config")
        tr.reset()
    streams = [workload.observations(patterns, s) for s in range(sessions)]
    t0 = time.perf_counter()
    await _send_loop(client, node, names, streams, t0, rate=rate, duration=duration, window=window)
    send_seconds = time.perf_counter() - t0
    await client.wait_all(drain_timeout)
    return {**_phase_report(tr, t0, send_seconds, sessions, rate, window), **extra}


async def _send_loop(
    client: LoadClient,
    node: str,
    names: list[str],
    streams: list[Iterator[list[str] | None]],
    t0: float,
    *,
    rate: float,
    duration: float,
    window: int,
) -> None:
    """Send the sessions' commands in turn until ``duration`` is over: paced at ``rate``
    (0: as fast as possible), at most ``window`` in flight (0: no cap)."""
    tr = client.tracker
    sessions = len(names)
    end = t0 + duration
    i = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if rate > 0:
            due = t0 + i / rate
            if due > now:
                await asyncio.sleep(min(due - now, end - now))
                continue
        if window > 0 and tr.in_flight() >= window:
            tr.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tr.progress.wait(), max(0.001, min(0.5, end - now)))
            continue
        s = i % sessions
        obs = next(streams[s])
        if obs is None:
            await client.send("clear_stm", names[s], node, {})
        else:
            await client.send("observe", names[s], node, {"strings": obs})
        i += 1
        if rate <= 0 and i % 256 == 0:
            await asyncio.sleep(0)  # let the consumer task run while flooding


def _phase_report(
    tr: _Tracker, t0: float, send_seconds: float, sessions: int, rate: float, window: int
) -> dict[str, Any]:
    """A measured phase's report: counts, rates, latency and processing percentiles, record
    sizes and the SLA tiers met."""
    lat = sorted(v * 1000.0 for v in tr.latency.values())
    received = len(lat)
    span = (tr.last_recv - t0) if received else 0.0
    p95 = percentile(lat, 95)
    proc = sorted(v * 1000.0 for v in tr.processing)
    sizes = sorted(tr.record_bytes)
    preds = tr.observe_predictions
    return {
        "sessions": sessions,
        "target_rate": rate or None,
        "window": window or None,
        "sent": len(tr.sent),
        "received": received,
        "missing": len(tr.sent) - received,
        "rejected": tr.rejected,
        "duplicates": tr.duplicates,
        "duration_s": round(send_seconds, 3),
        "send_rate": round(len(tr.sent) / send_seconds, 1) if send_seconds else 0.0,
        "throughput": round(received / span, 1) if span > 0 else 0.0,
        "latency_ms": {
            "p50": round(percentile(lat, 50), 3),
            "p95": round(p95, 3),
            "p99": round(percentile(lat, 99), 3),
            "max": round(lat[-1], 3) if lat else 0.0,
            "mean": round(sum(lat) / received, 3) if received else 0.0,
        },
        "processing_ms": {
            "p50": round(percentile(proc, 50), 3),
            "p95": round(percentile(proc, 95), 3),
            "p99": round(percentile(proc, 99), 3),
            "mean": round(sum(proc) / len(proc), 3),
        }
        if proc
        else None,
        "record_bytes": {
            "mean": round(sum(sizes) / len(sizes), 1),
            "p50": percentile([float(x) for x in sizes], 50),
            "max": sizes[-1],
        }
        if sizes
        else None,
        "observe_predictions_mean": round(sum(preds) / len(preds), 2) if preds else None,
        "decoded": tr.decoded,
        "sla": {
            name: {
                "p95_limit_ms": limit,
                "met": bool(received) and not report_missing(tr) and p95 < limit,
            }
            for name, limit in SLA_TIERS
        },
    }


async def run_load(
    bootstrap: str,
    input_topic: str,
    output_topic: str,
    *,
    node: str | None = None,
    sessions: int = 4,
    rate: float = 0.0,
    duration: float = 10.0,
    preload: int = 0,
    workload: Workload | None = None,
    drain_timeout: float = 30.0,
    preload_timeout: float = 300.0,
    window: int = 0,
    kafka_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the load and return the report (see :func:`format_report`)."""
    wl = workload or Workload()
    patterns = wl.patterns(preload)
    async with LoadClient(bootstrap, input_topic, output_topic, kafka_options) as client:
        node = node or f"loadgen-{client.run}"
        report: dict[str, Any] = {"node": node, "run": client.run}
        report["preload"] = await preload_patterns(client, node, patterns, timeout=preload_timeout)
        report.update(
            await measure(
                client,
                node,
                wl,
                patterns,
                sessions=sessions,
                rate=rate,
                duration=duration,
                window=window,
                drain_timeout=drain_timeout,
            )
        )
        return report


def report_missing(tracker: _Tracker) -> bool:
    """An SLA is not met when records went missing, whatever the latency of the others."""
    return len(tracker.latency) < len(tracker.sent)


def format_report(r: dict[str, Any]) -> str:
    """The human-readable report."""
    lat = r["latency_ms"]
    lines = [
        f"node {r['node']}  sessions {r['sessions']}  target rate {r['target_rate'] or 'max'} msg/s",
        f"preload: {r['preload']['patterns']} patterns ({r['preload']['commands']} commands) "
        f"in {r['preload']['seconds']:.2f}s",
        f"sent {r['sent']} in {r['duration_s']:.2f}s ({r['send_rate']:.0f} msg/s); received {r['received']}, "
        f"missing {r['missing']}, rejected {r['rejected']}, duplicates {r['duplicates']}",
        f"throughput {r['throughput']:.0f} records/s",
        f"latency ms: p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f}  "
        f"max {lat['max']:.2f}  mean {lat['mean']:.2f}",
    ]
    if r.get("processing_ms"):
        lines.append(
            f"worker processing ms: p50 {r['processing_ms']['p50']:.2f}  p95 {r['processing_ms']['p95']:.2f}"
        )
    if r.get("record_bytes"):
        preds = r.get("observe_predictions_mean")
        lines.append(
            f"output record bytes: mean {r['record_bytes']['mean']:.0f}"
            + (f"; predictions per observe record: mean {preds:.1f}" if preds is not None else "")
        )
    for name, tier in r["sla"].items():
        mark = "met" if tier["met"] else "NOT MET"
        lines.append(f"SLA {name:<9} P95 < {tier['p95_limit_ms']:.0f} ms: {mark}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="Kafka bootstrap (default: KATO_STREAM_KAFKA_BOOTSTRAP)")
    p.add_argument("--input-topic", help="default: <prefix>.observations")
    p.add_argument("--output-topic", help="default: <prefix>.predictions")
    p.add_argument("--node", help="node id (default: a fresh loadgen-<run> node)")
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument(
        "--rate", type=float, default=0.0, help="target msgs/s (0 = as fast as possible)"
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measured load")
    p.add_argument(
        "--window",
        type=int,
        default=0,
        help="most commands in flight (0 = no cap); with --rate 0: saturate without a backlog",
    )
    p.add_argument("--preload", type=int, default=0, help="patterns to learn before measuring")
    p.add_argument("--vocab", type=int, default=200)
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds to wait for the last records"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from kato_stream import fetch_backoff
    from kato_stream.settings import Settings

    s = Settings.from_env()
    fetch_backoff.install_from(s)
    if (
        args.sessions < 1
        or args.duration <= 0
        or args.vocab < 3
        or args.window < 0
        or not 0 <= args.noise <= 1
    ):
        print(
            "need --sessions >= 1, --duration > 0, --vocab >= 3, --window >= 0, 0 <= --noise <= 1",
            file=sys.stderr,
        )
        return 2
    coro = run_load(
        args.bootstrap or s.kafka_bootstrap,
        args.input_topic or s.topic("observations"),
        args.output_topic or s.topic("predictions"),
        node=args.node,
        sessions=args.sessions,
        rate=args.rate,
        duration=args.duration,
        preload=args.preload,
        workload=Workload(seed=args.seed, vocab=args.vocab, noise=args.noise),
        drain_timeout=args.drain_timeout,
        window=args.window,
        kafka_options=client_options(s),
    )
    try:
        report = asyncio.run(coro)
    except (ValueError, TimeoutError, OSError) as exc:
        print(f"loadgen failed: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(report).decode() if args.json else format_report(report))
    return 1 if report["missing"] else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kato-stream loadgen", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
