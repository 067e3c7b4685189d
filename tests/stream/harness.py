"""Helpers for stream tests: worker subprocesses, publishing with offsets, collecting records,
and the expected output computed in-process with the same Processor and the real engine."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from kato_stream.cli import consume_records
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.engine_adapter import CoreEngineAdapter
from kato_stream.stream.ltm import LtmRegistry
from kato_stream.stream.processor import Processor, Source
from kato_stream.topics import create_topics, topic_specs

ROOT = Path(__file__).resolve().parents[2]


class WorkerProc:
    """``python -m kato_stream.cli worker`` as a subprocess that can be SIGKILLed."""

    def __init__(self, settings: Settings, log_path: Path, argv: list[str] | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self.argv = argv or ["-m", "kato_stream.cli", "worker", "--loglevel", "info"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProc:
        env = {**os.environ, **self.settings.to_env(), "PYTHONPATH": str(ROOT)}
        Path(self.settings.data_dir).mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, *self.argv],
            env=env,
            cwd=self.settings.data_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def stop(self, timeout: float = 30) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""


def env_record(
    op: str,
    session: str,
    node: str,
    payload: dict[str, Any] | None = None,
    msg_id: str | None = None,
) -> bytes:
    doc: dict[str, Any] = {"op": op, "session_id": session, "node_id": node}
    if payload is not None:
        doc["payload"] = payload
    if msg_id is not None:
        doc["msg_id"] = msg_id
    return codecs.dumps(doc)


def mixed_stream(
    sessions: int, rounds: range, *, gets: bool = True, prefix: str = "c"
) -> list[tuple[bytes | None, bytes]]:
    """Observes with emotives and learns with and without msg_id, one node per session (so
    the outputs do not depend on how partitions interleave), then a ``get`` per session."""
    items: list[tuple[bytes | None, bytes]] = []
    for r in rounds:
        for i in range(sessions):
            s, n = f"{prefix}{i}", f"{prefix}n{i}"
            k = s.encode()
            items.append((k, env_record("observe", s, n, {"strings": [f"a{r % 3}", "b"]})))
            items.append(
                (
                    k,
                    env_record(
                        "observe", s, n, {"strings": [f"c{r % 2}"], "emotives": {"e": r / 10}}
                    ),
                )
            )
            # learns with and without msg_id: both kinds must count once per command
            items.append((k, env_record("learn", s, n, {}, msg_id=f"L{r}-{i}" if r % 2 else None)))
            items.append((k, env_record("observe", s, n, {"strings": ["a0"]})))
    if gets:
        for i in range(sessions):
            items.append(
                (f"{prefix}{i}".encode(), env_record("get", f"{prefix}{i}", f"{prefix}n{i}", {}))
            )
    return items


@dataclasses.dataclass
class Sent:
    key: bytes | None
    value: bytes
    source: Source


async def publish(
    bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes]]
) -> list[Sent]:
    """Publish in order (one in flight at a time per call keeps per-key order); returns sources."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=2, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        futs = [await producer.send(topic, v, key=k) for k, v in items]
        metas = await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return [
        Sent(k, v, Source(topic, m.partition, m.offset))
        for (k, v), m in zip(items, metas, strict=True)
    ]


async def setup_topics(s: Settings) -> None:
    await create_topics(s.kafka_bootstrap, topic_specs(s))


async def collect(bootstrap: str, topic: str, n: int, timeout: float) -> list[Any]:
    """Read until ``n`` records are present or ``timeout``."""
    deadline = time.monotonic() + timeout
    out: list[Any] = []
    while time.monotonic() < deadline:
        out = await consume_records(
            bootstrap, topic, timeout=max(1.0, deadline - time.monotonic()), to_end=True
        )
        if len(out) >= n:
            break
        await asyncio.sleep(0.3)
    return out


def by_source(records: list[Any]) -> dict[tuple[int, int], list[bytes]]:
    """Output records grouped by the (partition, offset) of their input."""
    out: dict[tuple[int, int], list[bytes]] = {}
    for r in records:
        src = codecs.loads(r.value)["source"]
        out.setdefault((src["partition"], src["offset"]), []).append(r.value)
    return out


def expected_outputs(
    sent: list[Sent], settings: Settings
) -> tuple[dict[tuple[int, int], bytes], LtmRegistry, dict[str, Any]]:
    """Run the commands in publish order through the Processor and real engine, in process."""
    ltm = LtmRegistry()
    # the session lists live outside the table when the worker keeps them in Redis: the
    # state-size limit then applies to the table value without them, as on the worker
    external = settings.persist and settings.session_lists == "redis"
    proc = Processor.from_settings(
        CoreEngineAdapter.from_settings(settings), ltm, settings, external_lists=external
    )
    table: dict[str, Any] = {}
    stored: dict[tuple[str, str, str], Any] = {}
    out: dict[tuple[int, int], bytes] = {}
    for s in sent:
        o = proc.process(s.key, s.value, s.source, table.get)
        if o.needs and o.session_id is not None:
            sid = o.session_id
            loaded = {f: stored.get((sid, f, i), []) for f, i in o.needs.items()}
            o = proc.process(s.key, s.value, s.source, table.get, loaded=loaded)
        for name, (ident, items) in o.observed.items():
            stored[(o.session_id or "", name, ident)] = items
        assert not o.duplicate
        if o.table_value is not None and o.session_id:
            table[o.session_id] = o.table_value
        assert o.record is not None
        raw = codecs.dumps(o.record)
        if len(raw) > settings.max_output_bytes:  # as the agent publishes it
            raw = codecs.dumps(Processor.truncate(o.record, len(raw), settings.max_output_bytes))
        out[(s.source.partition, s.source.offset)] = raw
    return out, ltm, table


def fold_patterns(records: list[Any]) -> LtmRegistry:
    """A fresh LTM built from pattern-topic records, as a starting worker builds it."""
    reg = LtmRegistry()
    for r in records:
        reg.apply_event(codecs.loads(r.value))
    return reg


def kb_summary(reg: LtmRegistry) -> dict[str, dict[str, int]]:
    return {n: {p: r.frequency for p, r in m.kb.patterns.items()} for n, m in reg.nodes.items()}


_READ_CHDB = """
import asyncio, json, sys
from kato_stream.settings import Settings
from kato_stream.stores import ClickHouseStore

async def main():
    store = ClickHouseStore(Settings.from_env())
    await store.start()
    try:
        out = {}
        for node in sys.argv[1:]:
            kb = await store.load_node(node)
            out[node] = {n: r.frequency for n, r in kb.patterns.items()}
        print(json.dumps(out))
    finally:
        await store.stop()

asyncio.run(main())
"""


def chdb_frequencies(settings: Settings, nodes: list[str]) -> dict[str, dict[str, int]]:
    """Pattern frequencies per node as stored in ClickHouse, read by a child process (chdb
    allows one process per data directory, and this test process may hold another one)."""
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _READ_CHDB, *nodes],
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.decode().strip().splitlines()[-1])
