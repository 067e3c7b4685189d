"""Persistence of ``kato.patterns`` into ClickHouse, Redis and Qdrant (real stores).

The persister runs in process on the shared stack and is fed by publishing pattern events
as workers do; the expected state is the knowledge base a worker folds from the same topic.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.core.naming import pattern_name, vector_name
from kato_stream.settings import Settings
from kato_stream.stores import ClickHouseStore, QdrantStore, RedisStore
from kato_stream.stores.redis_store import LATEST_KEY
from kato_stream.stream import codecs
from kato_stream.stream.ltm import LtmRegistry, clear_event_dict, learn_event_dict
from kato_stream.stream.persist import LatestWriter, PatternPersister, persist_group
from tests.stream.harness import publish, setup_topics

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


def _learn(node: str, learn_id: str, events: list[list[str]], **kw: Any) -> LearnEvent:
    ev = tuple(tuple(e) for e in events)
    return LearnEvent(node_id=node, learn_id=learn_id, name=pattern_name(ev), events=ev, **kw)


def _vec(values: list[float]) -> tuple[str, tuple[float, ...]]:
    return (vector_name(values), tuple(values))


async def _check_equal(
    node: str,
    want: KnowledgeBase,
    ch: ClickHouseStore,
    rd: RedisStore,
    qd: QdrantStore,
    want_vectors: set[str],
) -> None:
    got = await ch.load_node(node)
    assert {n: r.frequency for n, r in got.patterns.items()} == {
        n: r.frequency for n, r in want.patterns.items()
    }
    for name, rec in want.patterns.items():
        assert got.patterns[name].emotives == rec.emotives
        assert got.patterns[name].metadata == rec.metadata
        meta = await rd.get_pattern_meta(node, name)
        assert meta == {
            "frequency": rec.frequency,
            "emotives": rec.emotives,
            "metadata": rec.metadata,
        }, name
    assert dict(got.symbol_freq) == dict(want.symbol_freq)
    assert dict(got.pmf) == dict(want.pmf)
    assert got.affinity == want.affinity
    assert await ch.count_patterns(node) == len(want.patterns)
    freq, pmf = await rd.get_symbol_stats(node)
    assert freq == dict(want.symbol_freq)
    assert pmf == dict(want.pmf)
    assert await rd.get_globals(node) == {
        "total_symbols_in_patterns_frequencies": want.total_symbols_in_patterns_frequencies,
        "total_pattern_frequencies": want.total_pattern_frequencies,
        "total_unique_patterns": want.total_unique_patterns,
    }
    for symbol, aff in want.affinity.items():
        assert await rd.get_affinity(node, symbol) == pytest.approx(aff)
    assert {n for n, _ in await qd.load(node)} == want_vectors


async def test_persist_learns_duplicates_relearn_and_clear(
    stack_settings: Settings,
    unique_id: str,
    clickhouse_store: ClickHouseStore,
    redis_store: RedisStore,
    qdrant_store: QdrantStore,
) -> None:
    s = dataclasses.replace(stack_settings, partitions=2)
    await setup_topics(s)
    topic = s.topic("patterns")
    node, other = f"{unique_id}-a", f"{unique_id}-b"
    v1, v2 = _vec([1.0, 2.0, 3.0]), _vec([0.5, 0.25, -1.0])
    l1 = _learn(
        node,
        "s1/m1",
        [["hello"], ["world", "x"]],
        emotives=({"joy": 0.5},),
        metadata={"src": ["a"]},
        vectors=(v1,),
    )
    l1_again = dataclasses.replace(l1, learn_id="s1/m2", emotives=({"joy": 1.0},))  # re-learn
    l2 = _learn(node, "s1/m3", [["foo"], ["bar"]], vectors=(v2,))
    l3 = _learn(other, "s2/m1", [["q"], ["r"]])
    events = [l1, l1, l1_again, l2, l3, l1]  # l1 redelivered twice (one after later learns)
    items = [(e.node_id.encode(), codecs.dumps(learn_event_dict(e))) for e in events]
    await publish(s.kafka_bootstrap, topic, items)

    worker_view = LtmRegistry()
    for e in events:
        worker_view.apply_event(learn_event_dict(e))

    p = PatternPersister(s, clickhouse=clickhouse_store, redis=redis_store, qdrant=qdrant_store)
    assert p.group_id == persist_group(s) == f"{s.app_id}-persist"
    await p.start()
    try:
        await p.wait_caught_up(60)
        want = worker_view.node(node).kb
        assert want.patterns[l1.name].frequency == 2
        await _check_equal(node, want, clickhouse_store, redis_store, qdrant_store, {v1[0], v2[0]})
        await _check_equal(
            other, worker_view.node(other).kb, clickhouse_store, redis_store, qdrant_store, set()
        )
        assert await clickhouse_store.count_learns(node) == 3
        assert await clickhouse_store.count_patterns(node) == 2

        # clear-all of one node, then an echo of an earlier learn: nothing comes back
        clear = clear_event_dict(node, "clear:s1/m4")
        later = [
            (node.encode(), codecs.dumps(clear)),
            (node.encode(), codecs.dumps(clear)),  # redelivered clear
            (node.encode(), codecs.dumps(learn_event_dict(l2))),  # echo of a pre-clear learn
        ]
        await publish(s.kafka_bootstrap, topic, later)
        for _, v in later:
            worker_view.apply_event(codecs.loads(v))
        await p.wait_caught_up(60)
        assert worker_view.node(node).kb.patterns == {}
        assert (await clickhouse_store.load_node(node)).patterns == {}
        assert await clickhouse_store.count_learns(node) == 3  # the log keeps every learn
        assert await redis_store.get_pattern_meta(node, l1.name) is None
        assert await redis_store.get_pattern_meta(node, l2.name) is None
        assert await redis_store.get_globals(node) == {
            "total_symbols_in_patterns_frequencies": 0,
            "total_pattern_frequencies": 0,
            "total_unique_patterns": 0,
        }
        assert await qdrant_store.count(node) == 0
        # the other node is untouched
        await _check_equal(
            other, worker_view.node(other).kb, clickhouse_store, redis_store, qdrant_store, set()
        )

        # a learn after the clear is persisted again
        l4 = _learn(node, "s1/m5", [["new"], ["start"]], vectors=(v2,))
        await publish(
            s.kafka_bootstrap, topic, [(node.encode(), codecs.dumps(learn_event_dict(l4)))]
        )
        worker_view.apply_event(learn_event_dict(l4))
        await p.wait_caught_up(60)
        await _check_equal(
            node, worker_view.node(node).kb, clickhouse_store, redis_store, qdrant_store, {v2[0]}
        )
        assert await clickhouse_store.count_patterns(node) == 1
    finally:
        await asyncio.wait_for(p.stop(), 30)
    assert p.errors == 0

    # a new persister of the same group resumes after the committed offsets: nothing to redo
    p2 = PatternPersister(s, clickhouse=clickhouse_store, redis=redis_store, qdrant=qdrant_store)
    await p2.start()
    try:
        await asyncio.wait_for(p2.running.wait(), 30)
        await asyncio.sleep(1.0)
        assert p2.persisted == 0
    finally:
        await asyncio.wait_for(p2.stop(), 30)


async def test_persister_retries_until_stores_answer(stack_settings: Settings) -> None:
    """An unreachable store does not stop the persister, and stop() does not hang."""
    s = dataclasses.replace(stack_settings, redis_url="redis://127.0.0.1:1/0", store_timeout=0.5)
    await setup_topics(s)
    p = PatternPersister(s, clickhouse=object(), qdrant=object())
    await p.start()
    await asyncio.sleep(1.0)
    assert p.errors >= 1 and not p.running.is_set()
    await asyncio.wait_for(p.stop(), 15)


async def test_latest_writer(
    stack_settings: Settings, redis_store: RedisStore, unique_id: str
) -> None:
    lw = LatestWriter(stack_settings, redis=redis_store)
    await lw.start()
    try:
        lw.put(f"{unique_id}-s", codecs.dumps({"op": "observe", "time": 1}))
        lw.put(f"{unique_id}-s", codecs.dumps({"op": "observe", "time": 2}))
        for _ in range(100):
            got = await redis_store.get_latest(f"{unique_id}-s")
            if got is not None:
                break
            await asyncio.sleep(0.05)
        assert got == {"op": "observe", "time": 2}
        ttl = await redis_store.client.ttl(LATEST_KEY.format(sid=f"{unique_id}-s"))
        assert 0 < ttl <= stack_settings.latest_ttl
    finally:
        await lw.stop()
