"""Replay into the running stack: a real worker subprocess with the real engine.

* Replaying the same range twice leaves the knowledge base as after one replay (pattern
  frequencies seen through a ``predict`` probe).
* Replaying one node's stream into a fresh node reproduces the original prediction records'
  ``predictions`` and ``future_potentials`` byte for byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.tools.replay import ReplayOptions, replay_topic
from kato_stream.tools.source import RangeSpec
from tests.stream.harness import WorkerProc, env_record, publish, setup_topics
from tests.tools.helpers import read_all

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

EVENTS = [["hello", "world"], ["foo"], ["bar", "baz"]]


@pytest.fixture
def worker(
    stack_settings: Settings, tmp_path: Path
) -> Iterator[Callable[[], tuple[Settings, WorkerProc]]]:
    procs: list[WorkerProc] = []
    s = dataclasses.replace(
        stack_settings, partitions=2, data_dir=str(tmp_path / "w"), commit_interval=0.5
    )

    def start() -> tuple[Settings, WorkerProc]:
        procs.append(WorkerProc(s, tmp_path / "worker.log").start())
        return s, procs[-1]

    yield start
    for p in procs:
        if p.alive():
            p.stop(20)


def _training(session: str, node: str) -> list[tuple[bytes, bytes]]:
    """Three learns without msg_id (one pattern twice: frequency 2), one with, then probes."""
    k = session.encode()
    out: list[tuple[bytes, bytes]] = []

    def learn(events: list[list[str]], msg_id: str | None = None) -> None:
        for e in events:
            out.append((k, env_record("observe", session, node, {"strings": e})))
        out.append((k, env_record("learn", session, node, {}, msg_id=msg_id)))

    learn(EVENTS)
    learn(EVENTS)
    learn([["hello"], ["other"], ["end"]])
    learn([["foo"], ["bar"]], msg_id=f"client-learn-{session}")
    for e in (["hello", "world"], ["foo"]):
        out.append((k, env_record("observe", session, node, {"strings": e})))
    out.append((k, env_record("predict", session, node, {})))
    out.append((k, env_record("clear_stm", session, node, {})))
    return out


async def _probe(s: Settings, node: str, tag: str, seen: int) -> dict[str, Any]:
    """Predictions of a new session of ``node`` after two known events (read-only for the KB)."""
    session, k = f"probe-{tag}", f"probe-{tag}".encode()
    items = [
        (k, env_record("observe", session, node, {"strings": ["hello", "world"]})),
        (k, env_record("observe", session, node, {"strings": ["foo"]})),
        (k, env_record("predict", session, node, {}, msg_id=f"probe-{tag}")),
    ]
    await publish(s.kafka_bootstrap, s.topic("observations"), items)
    recs = await read_all(s.kafka_bootstrap, s.topic("predictions"), expect=seen + 3, timeout=60)
    mine = [
        codecs.loads(r.value) for r in recs if codecs.loads(r.value)["msg_id"] == f"probe-{tag}"
    ]
    assert len(mine) == 1, f"probe {tag}: {len(recs)} records"
    return {
        "predictions": mine[0]["predictions"],
        "future_potentials": mine[0]["future_potentials"],
    }


async def _get(s: Settings, session: str, node: str, tag: str, seen: int) -> dict[str, Any]:
    """The session's snapshot (``get``): its STM, time, accumulators and config."""
    k = session.encode()
    item = (k, env_record("get", session, node, {}, msg_id=f"get-{tag}"))
    await publish(s.kafka_bootstrap, s.topic("observations"), [item])
    recs = await read_all(s.kafka_bootstrap, s.topic("predictions"), expect=seen + 1, timeout=60)
    mine = [codecs.loads(r.value) for r in recs if codecs.loads(r.value)["msg_id"] == f"get-{tag}"]
    assert len(mine) == 1 and mine[0]["status"] == "ok", mine
    return dict(mine[0]["response"])


def _frequencies(probe: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["frequency"] for p in probe["predictions"]}


async def test_replaying_twice_counts_each_learn_once(
    worker: Callable[[], tuple[Settings, WorkerProc]],
) -> None:
    s, w = worker()
    await setup_topics(s)
    obs = s.topic("observations")
    original = _training("s1", "n1")
    sent = await publish(s.kafka_bootstrap, obs, original)
    seen = len(original)
    assert (
        len(await read_all(s.kafka_bootstrap, s.topic("predictions"), expect=seen, timeout=120))
        == seen
    ), w.log_tail()
    before = await _probe(s, "n1", "before", seen)
    seen += 3
    assert sorted(_frequencies(before).values()) == [1, 1, 2]  # the pattern learned twice counts 2

    # Exactly the original commands (the probes and replays land after them in the same topic).
    ends: dict[int, int] = {}
    for x in sent:
        ends[x.source.partition] = max(ends.get(x.source.partition, 0), x.source.offset + 1)
    rng = RangeSpec(topic=obs, offsets=tuple((p, 0, e) for p, e in sorted(ends.items())))

    async def run(opts: ReplayOptions, node: str, tag: str) -> dict[str, int]:
        nonlocal seen
        r = await replay_topic(s.kafka_bootstrap, rng, s.kafka_bootstrap, obs, opts)
        assert (r.published, r.failed) == (len(original), 0)
        seen += r.published
        assert (
            len(await read_all(s.kafka_bootstrap, s.topic("predictions"), expect=seen, timeout=60))
            >= seen
        )
        probe = await _probe(s, node, tag, seen)
        seen += 3
        if node == "bf":
            assert probe == before  # a fresh node predicts exactly as the original did
        return _frequencies(probe)

    # Into a fresh node, twice: the second replay leaves its knowledge base unchanged.
    fresh = ReplayOptions(node="n1", to_node="bf")
    assert await run(fresh, "bf", "once") == await run(fresh, "bf", "twice") == _frequencies(before)

    # Into the original node: every replayed learn keeps its original's identity (msg_id, or
    # the source coordinates as origin), so neither the first nor the second replay counts
    # anything twice.
    same = ReplayOptions(node="n1")
    snapshot = await _get(s, "s1", "n1", "before-same", seen)
    seen += 1
    after1 = await run(same, "n1", "same1")
    assert after1 == _frequencies(before)
    # ... and every replayed command was answered "duplicate": the session is as it was
    # (its time counts observations: a replayed observe would have moved it)
    recs = await read_all(s.kafka_bootstrap, s.topic("predictions"), expect=seen, timeout=60)
    replayed = [
        d
        for d in (codecs.loads(r.value) for r in recs)
        if d["session_id"] == "s1" and d["source"]["offset"] > max(ends.values())
    ]
    statuses = {d["status"] for d in replayed if d["msg_id"] != "get-before-same"}
    assert statuses == {"duplicate"}, statuses
    assert await _get(s, "s1", "n1", "after-same", seen) == snapshot
    seen += 1
    assert await run(same, "n1", "same2") == after1
    # A new prefix is a new generation (the way to re-count after a clear_all): every learn,
    # with or without a client msg_id, counts once more.
    after3 = await run(ReplayOptions(node="n1", id_prefix="replay2:"), "n1", "gen2")
    assert sorted(after3.values()) == [2, 2, 4]
    assert w.alive(), w.log_tail()


async def test_fresh_node_reproduces_predictions_byte_for_byte(
    worker: Callable[[], tuple[Settings, WorkerProc]],
) -> None:
    s, w = worker()
    await setup_topics(s)
    obs, pred = s.topic("observations"), s.topic("predictions")
    a, b = _training("sa", "na"), _training("sb", "nb")
    mixed = [x for pair in zip(a, b, strict=True) for x in pair]  # two nodes, interleaved
    await publish(s.kafka_bootstrap, obs, mixed)
    recs = await read_all(s.kafka_bootstrap, pred, expect=len(mixed), timeout=120)
    assert len(recs) == len(mixed), w.log_tail()

    r = await replay_topic(
        s.kafka_bootstrap,
        RangeSpec(topic=obs),
        s.kafka_bootstrap,
        obs,
        ReplayOptions(node="na", to_node="na2"),
    )
    assert (r.published, r.skipped_filter) == (len(a), len(b))
    recs = await read_all(s.kafka_bootstrap, pred, expect=len(mixed) + len(a), timeout=60)
    docs = [codecs.loads(x.value) for x in recs]
    orig = sorted((d for d in docs if d["session_id"] == "sa"), key=lambda d: d["source"]["offset"])
    copy = sorted(
        (d for d in docs if d["session_id"] == "sa@na2"), key=lambda d: d["source"]["offset"]
    )
    assert len(orig) == len(copy) == len(a)
    assert {d["node_id"] for d in copy} == {"na2"} and all(d["status"] == "ok" for d in copy)
    assert any(d["predictions"] for d in orig)  # the comparison is not vacuous
    for o, c in zip(orig, copy, strict=True):
        assert o["op"] == c["op"]
        for field in ("predictions", "future_potentials", "learned_patterns", "stm_length", "time"):
            assert codecs.dumps(o[field]) == codecs.dumps(c[field]), (o["op"], field)
    assert w.alive(), w.log_tail()
