"""LTM bootstrap from the durable stores (``KATO_STREAM_LTM_BOOTSTRAP=stores``, stream/ltm/follower.py).

A worker with persistence learns in several nodes (with a clear-all and re-learns) and is
stopped; another worker learns more without persisting (the topic tail).  A worker started
with the stores bootstrap must then answer ``predict``/``get`` byte-identically to the
in-process run of every command (the LTM a full fold of ``kato.patterns`` gives), and its log
line must say how many events came from ClickHouse and how many from the topic.  When
ClickHouse holds nothing, the worker falls back to folding the topic, with the same answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from kato_stream.cli import consume_records
from kato_stream.settings import Settings
from kato_stream.stream.group import evict_members
from kato_stream.stream.ltm import LtmRegistry, persisted_offsets
from kato_stream.stream.persist import persist_group
from tests.stream.harness import (
    ROOT,
    Sent,
    WorkerProc,
    by_source,
    env_record,
    expected_outputs,
    fold_patterns,
    publish,
    setup_topics,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

Items = list[tuple[bytes | None, bytes]]


def ltm_summary(reg: LtmRegistry) -> dict[str, Any]:
    """Everything a node's LTM holds, JSON-comparable (the fingerprint chains every applied
    learn and clear id in order)."""
    out: dict[str, Any] = {}
    for node, mem in sorted(reg.nodes.items()):
        kb = mem.kb
        out[node] = {
            "fingerprint": kb.fingerprint,
            "version": kb.version,
            "applied": sorted(kb.applied),
            "patterns": {
                n: [r.frequency, r.emotives, r.metadata, [list(e) for e in r.events]]
                for n, r in sorted(kb.patterns.items())
            },
            "symbol_freq": dict(sorted(kb.symbol_freq.items())),
            "pmf": dict(sorted(kb.pmf.items())),
            "affinity": kb.affinity,
            "totals": [
                kb.total_symbols_in_patterns_frequencies,
                kb.total_pattern_frequencies,
                kb.total_unique_patterns,
            ],
            "vectors": {n: v.tolist() for n, v in sorted(mem.vectors._vectors.items())},
        }
    return json.loads(json.dumps(out))


_STORES_LTM = """
import asyncio, dataclasses, json
from kato_stream.settings import Settings
from kato_stream.stream.ltm import LtmRegistry, PatternFollower
from tests.stream.test_ltm_bootstrap import ltm_summary

async def main():
    s = Settings.from_env()
    reg = LtmRegistry()
    f = PatternFollower(s.kafka_bootstrap, s.topic("patterns"), reg, s)
    await f.start()
    try:
        await asyncio.wait_for(f.ready.wait(), 60)
    finally:
        await f.stop()
    print(json.dumps({"report": dataclasses.asdict(f.bootstrap_report), "ltm": ltm_summary(reg)}))

asyncio.run(main())
"""


_PERSIST = """
import asyncio, json
from kato_stream.settings import Settings
from kato_stream.stream.persist import PatternPersister

async def main():
    p = PatternPersister(Settings.from_env())
    await p.start()
    try:
        await p.wait_caught_up(60)
    finally:
        await p.stop()
    assert p.errors == 0, p.errors
    print(json.dumps(p.committed))

asyncio.run(main())
"""


def persist_now(settings: Settings) -> dict[int, int]:
    """Persist kato.patterns up to its current end, as a worker's persister does (same group),
    in a child process (chdb); returns the committed offsets."""
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _PERSIST], env=env, capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return {int(p): o for p, o in json.loads(out.stdout.decode().strip().splitlines()[-1]).items()}


def stores_ltm(settings: Settings) -> dict[str, Any]:
    """The LTM a stores bootstrap builds, in a child process (chdb: one process per dir)."""
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _STORES_LTM], env=env, capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def _learning(uid: str, nodes: int, rounds: range, clear_node: int | None = None) -> Items:
    """One session per node: observes (strings, emotives, metadata, vectors) and learns, some
    learns repeated (frequencies > 1); ``clear_node`` gets a clear_all half-way, then re-learns."""
    items: Items = []
    for r in rounds:
        for i in range(nodes):
            s, n = f"{uid}s{i}", f"{uid}n{i}"
            k = s.encode()
            obs = {
                "strings": [f"a{r % 3}", f"b{i}"],
                "emotives": {"joy": r / 10, "fear": i / 4},
                "metadata": {"round": [str(r % 2)]},
                "vectors": [[float(i), float(r % 3), 0.5]],
            }
            items.append((k, env_record("observe", s, n, obs)))
            items.append((k, env_record("observe", s, n, {"strings": [f"c{r % 2}"]})))
            items.append((k, env_record("learn", s, n, {}, msg_id=f"L{r}-{i}")))
            if clear_node == i and r == rounds[len(rounds) // 2]:
                items.append((k, env_record("clear_all", s, n, {})))
    return items


def _questions(uid: str, nodes: int) -> Items:
    items: Items = []
    for i in range(nodes):
        s, n = f"{uid}s{i}", f"{uid}n{i}"
        k = s.encode()
        items.append((k, env_record("observe", s, n, {"strings": ["a1", f"b{i}"]})))
        items.append((k, env_record("observe", s, n, {"strings": ["c0"]})))
        items.append((k, env_record("predict", s, n, {})))
        items.append((k, env_record("get", s, n, {})))
    return items


async def _end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: o for tp, o in (await c.end_offsets(tps)).items()}
    finally:
        await c.stop()


async def _wait_outputs(s: Settings, n: int, w: WorkerProc, timeout: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout
    recs: list[Any] = []
    while time.monotonic() < deadline:
        recs = await consume_records(
            s.kafka_bootstrap, s.topic("predictions"), timeout=5, to_end=True
        )
        if len(by_source(recs)) >= n or not w.alive():
            break
        await asyncio.sleep(0.3)
    assert len(by_source(recs)) >= n, w.log_tail()
    return recs


async def _wait_persisted(s: Settings, w: WorkerProc, timeout: float = 60) -> dict[int, int]:
    """Poll until the persister group committed the pattern topic's end on every partition."""
    topic = s.topic("patterns")
    end = await _end_offsets(s.kafka_bootstrap, topic, s.partitions)
    tps = [TopicPartition(topic, p) for p in range(s.partitions)]
    deadline = time.monotonic() + timeout
    got: dict[int, int] = {}
    while time.monotonic() < deadline:
        got = await persisted_offsets(s.kafka_bootstrap, persist_group(s), tps)
        if all(got.get(p, 0) >= o for p, o in end.items() if o):
            return end
        await asyncio.sleep(0.3)
    raise AssertionError(f"persister behind: committed {got}, end {end}\n{w.log_tail()}")


async def _stop(s: Settings, w: WorkerProc) -> None:
    w.stop()  # SIGTERM: the persister writes and commits its batch, chdb is released
    # fence the memberships anyway (the embedded broker never expires a member)
    await evict_members(s.kafka_bootstrap, s.app_id)
    await evict_members(s.kafka_bootstrap, persist_group(s))


def _bootstrap_line(w: WorkerProc) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in w.log_path.read_text("utf-8", "replace").splitlines():
            if "LTM rebuilt: bootstrap=" in line:
                return line
        time.sleep(0.2)
    raise AssertionError(w.log_tail())


def _assert_answers(recs: list[Any], want: dict[tuple[int, int], bytes], sent: list[Sent]) -> None:
    got = by_source(recs)
    for x in sent:
        src = (x.source.partition, x.source.offset)
        assert set(got[src]) == {want[src]}, (src, got[src][0][:400], want[src][:400])


async def _learn_then_ask(
    s: Settings, spawn_worker: Any, uid: str, *, clickhouse_second: str
) -> tuple[WorkerProc, dict[int, int], int, int]:
    """A worker learns; the persister writes what is on kato.patterns; the worker learns more
    (the topic tail, not persisted) and stops.  A stores worker on ``clickhouse_second`` then
    must give every answer.  Returns it, the persisted offsets and the pattern events
    persisted and in all."""
    await setup_topics(s)
    nodes = 3
    sent: list[Sent] = []
    first = _learning(uid, nodes, range(6), clear_node=1)
    sent += await publish(s.kafka_bootstrap, s.topic("observations"), first)
    w1 = spawn_worker(dataclasses.replace(s, persist=False), "learning")
    await _wait_outputs(s, len(sent), w1)
    marks = persist_now(s)
    end = await _end_offsets(s.kafka_bootstrap, s.topic("patterns"), s.partitions)
    assert {p: marks.get(p, 0) for p in end} == end

    # more learns, not persisted: the second worker must read them from the topic tail
    sent += await publish(
        s.kafka_bootstrap, s.topic("observations"), _learning(uid, nodes, range(6, 9))
    )
    await _wait_outputs(s, len(sent), w1)
    total = await _end_offsets(s.kafka_bootstrap, s.topic("patterns"), s.partitions)
    await _stop(s, w1)

    questions = await publish(s.kafka_bootstrap, s.topic("observations"), _questions(uid, nodes))
    sent += questions
    want, _, _ = expected_outputs(sent, s)
    s2 = dataclasses.replace(s, ltm_bootstrap="stores", clickhouse_url=clickhouse_second)
    w2 = spawn_worker(s2, "bootstrap")
    recs = await _wait_outputs(s, len(sent), w2)
    _assert_answers(recs, want, sent)  # every answer, the new worker's included
    assert any(
        b'"predictions":[{' in want[(q.source.partition, q.source.offset)] for q in questions
    )
    return w2, end, sum(end.values()), sum(total.values())


async def test_stores_bootstrap_equals_full_fold(
    stream_settings: Settings, spawn_worker: Any, tmp_path: Path, unique_id: str
) -> None:
    chdb = f"chdb://{tmp_path / 'chdb'}"
    s = dataclasses.replace(stream_settings, persist=True, clickhouse_url=chdb)
    w2, marks, persisted, total = await _learn_then_ask(
        s, spawn_worker, unique_id, clickhouse_second=chdb
    )
    assert 0 < persisted < total
    line = _bootstrap_line(w2)
    m = re.search(
        r"bootstrap=(\w+) \(setting stores\): (\d+) events from ClickHouse, (\d+) from", line
    )
    assert m, line
    # every persisted pattern event came from ClickHouse (each is one distinct learn or
    # clear), and only the tail was read from the topic
    assert (m[1], int(m[2]), int(m[3])) == ("stores", persisted, total - persisted), line
    assert "fallback" not in line, line
    assert f"start offsets {dict(sorted(marks.items()))}" in line, line  # the tail only
    await _wait_persisted(s, w2)  # the tail is in ClickHouse now too
    await _stop(s, w2)

    # the whole LTM, built from ClickHouse alone, equals the fold of the topic from 0
    got = stores_ltm(dataclasses.replace(s, ltm_bootstrap="stores"))
    assert got["report"]["ran"] == "stores" and got["report"]["stream_events"] == 0, got["report"]
    assert got["report"]["store_events"] == total, got["report"]
    pats = await consume_records(s.kafka_bootstrap, s.topic("patterns"), timeout=10, to_end=True)
    assert len(pats) == total
    want = ltm_summary(fold_patterns(pats))
    assert got["ltm"] == want
    cleared = want[f"{unique_id}n1"]
    assert len(cleared["applied"]) > len(cleared["patterns"]) + 1 > 1  # learns before the clear
    assert max(p[0] for n in want.values() for p in n["patterns"].values()) > 1


async def test_stores_bootstrap_falls_back_when_clickhouse_is_empty(
    stream_settings: Settings, spawn_worker: Any, tmp_path: Path, unique_id: str
) -> None:
    s = dataclasses.replace(
        stream_settings, persist=True, clickhouse_url=f"chdb://{tmp_path / 'chdb'}"
    )
    w2, _, persisted, total = await _learn_then_ask(
        s, spawn_worker, unique_id, clickhouse_second=f"chdb://{tmp_path / 'empty-chdb'}"
    )
    assert persisted > 0
    line = _bootstrap_line(w2)
    m = re.search(
        r"bootstrap=(\w+) \(setting stores\): (\d+) events from ClickHouse, (\d+) from", line
    )
    assert m, line
    assert (m[1], int(m[2]), int(m[3])) == ("stream", 0, total), line
    assert "fallback: ClickHouse holds no learns or clears" in line, line
    await _stop(s, w2)

    # ClickHouse unreachable: the same fallback, and the LTM is the fold of the topic
    pats = await consume_records(s.kafka_bootstrap, s.topic("patterns"), timeout=10, to_end=True)
    got = stores_ltm(
        dataclasses.replace(
            s, ltm_bootstrap="stores", clickhouse_url="http://127.0.0.1:1", store_timeout=1.0
        )
    )
    assert got["report"]["ran"] == "stream", got["report"]
    assert "unavailable" in got["report"]["reason"], got["report"]
    assert got["report"]["stream_events"] == len(pats) == total
    assert got["ltm"] == ltm_summary(fold_patterns(pats))
