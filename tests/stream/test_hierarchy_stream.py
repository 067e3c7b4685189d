"""Node chains through a real worker and broker (docs/hierarchy.md): the issue's example, the
way down as a stream command, and a worker SIGKILLed in the middle of a 3-level chain that,
restarted, leaves every level exactly as an uninterrupted run (nothing forwarded twice)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from kato_stream.cli import consume_records
from kato_stream.settings import Settings
from tests.stream.harness import (
    collect,
    env_record,
    fold_patterns,
    kb_summary,
    publish,
    setup_topics,
)
from tests.stream.test_hierarchy import Chain

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]


def _open(sid: str, node: str, **config: Any) -> tuple[bytes, bytes]:
    return sid.encode(), env_record("open", sid, node, {"config": config})


def _observe(sid: str, node: str, tok: str) -> tuple[bytes, bytes]:
    return sid.encode(), env_record("observe", sid, node, {"strings": [tok]})


async def _patterns(s: Settings) -> dict[str, dict[str, int]]:
    recs = await consume_records(s.kafka_bootstrap, s.topic("patterns"), timeout=10, to_end=True)
    return kb_summary(fold_patterns(recs))


async def test_six_tokens_two_level_zero_patterns_one_level_one_pattern(
    stream_settings: Settings, spawn_worker
) -> None:
    s = stream_settings
    await setup_topics(s)
    p = s.topic_prefix
    l0, l1, sid = f"{p}-L0", f"{p}-L1", f"{p}-doc"
    items = [
        _open(sid, l0, max_pattern_length=3, forward_to=l1),
        _open(f"{sid}/{l1}", l1, max_pattern_length=2),
    ] + [_observe(sid, l0, t) for t in ["the", "cat", "sat", "on", "the", "mat"]]
    await publish(s.kafka_bootstrap, s.topic("observations"), items)
    w = spawn_worker(s)
    # 8 commands and the 2 observes they forward, each answered
    recs = [
        orjson.loads(r.value)
        for r in await collect(s.kafka_bootstrap, s.topic("predictions"), 10, 90)
    ]
    assert len(recs) == 10, w.log_tail()
    assert all(r["status"] == "ok" for r in recs)
    learned0 = [n for r in recs if r["session_id"] == sid for n in r["learned_patterns"]]
    assert len(learned0) == 2
    ups = [r for r in recs if r["session_id"] == f"{sid}/{l1}" and r["op"] == "observe"]
    assert [r["msg_id"][:4] for r in ups] == ["fwd-", "fwd-"]
    (top,) = [n for r in ups for n in r["learned_patterns"]]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kb = await _patterns(s)
        if l1 in kb:
            break
        await asyncio.sleep(0.3)
    assert set(kb[l0]) == {n[5:] for n in learned0}
    assert kb[l1] == {top[5:]: 1}

    # the way down, as any stream client asks it
    await publish(
        s.kafka_bootstrap,
        s.topic("observations"),
        [(b"reader", env_record("unravel", "reader", l1, {"pattern": top, "down": [l0]}))],
    )
    recs = [
        orjson.loads(r.value)
        for r in await collect(s.kafka_bootstrap, s.topic("predictions"), 11, 60)
    ]
    (answer,) = [r for r in recs if r["op"] == "unravel"]
    assert answer["status"] == "ok", answer
    assert answer["response"]["events"] == [["the"], ["cat"], ["sat"], ["on"], ["the"], ["mat"]]
    assert answer["response"]["nodes"] == [l1, l0]


async def test_a_worker_killed_mid_chain_forwards_nothing_twice(
    stream_settings: Settings, spawn_worker
) -> None:
    s = stream_settings
    await setup_topics(s)
    p = s.topic_prefix
    nodes = [f"{p}-A0", f"{p}-A1", f"{p}-A2"]
    docs = [f"{p}-d{i}" for i in range(4)]
    items = []
    for d in docs:
        items.append(_open(d, nodes[0], max_pattern_length=3, forward_to=nodes[1]))
        items.append(_open(f"{d}/{nodes[1]}", nodes[1], max_pattern_length=3, forward_to=nodes[2]))
        items.append(_open(f"{d}/{nodes[1]}/{nodes[2]}", nodes[2], max_pattern_length=2))
    words = [
        "it",
        "was",
        "the",
        "best",
        "of",
        "times",
        "it",
        "was",
        "the",
        "worst",
        "of",
        "times",
        "it",
        "was",
        "the",
        "age",
        "of",
        "wisdom",
    ]
    for r in range(6):
        for i, d in enumerate(docs):
            for w_ in words[(r + i) % 5 :][:9]:
                items.append(_observe(d, nodes[0], w_))

    # the reference: the same records in process, forwards fed back in order
    ref = Chain()
    for k, v in items:
        ref.log.append((k, v))
    ref.run()
    want = {n: {name: f for name, (_, f) in ref.patterns(n).items()} for n in nodes}
    assert want[nodes[2]], "the workload must reach level 2"

    await publish(s.kafka_bootstrap, s.topic("observations"), items)
    first = spawn_worker(s, "first")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        got = await consume_records(
            s.kafka_bootstrap, s.topic("predictions"), timeout=10, to_end=True
        )
        if len(got) >= len(items) // 3:
            break
    first.kill()  # SIGKILL: no commit, no flush
    second = spawn_worker(s, "second")
    deadline = time.monotonic() + 150
    kb: dict[str, dict[str, int]] = {}
    while time.monotonic() < deadline:
        kb = await _patterns(s)
        if all(kb.get(n) == want[n] for n in nodes):
            break
        await asyncio.sleep(0.5)
    assert {n: kb.get(n) for n in nodes} == want, second.log_tail()
