"""Redis store on the real embedded Redis: KATO's key layout, idempotency, sessions."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from kato_stream.core.knowledge import LearnEvent, Precomputed
from kato_stream.embedded import free_port
from kato_stream.embedded.redis import redis_process, redis_server_binary, wait_redis
from kato_stream.settings import Settings
from kato_stream.stores import RedisStore, StoreError, StoreUnavailableError, kb_id
from kato_stream.stores.redis_store import ACTIVE_INDEX
from tests.stores.worked_example import EXPECTED, P1, P2, applied, learns

pytestmark = pytest.mark.timeout(60)


async def _snapshot(store: RedisStore, node: str) -> dict[str, object]:
    """Every ``{kb}:*`` key with its value, for before/after comparisons."""
    r = store.client
    out: dict[str, object] = {}
    async for key in r.scan_iter(match=kb_id(node) + ":*"):
        kind = (await r.type(key)).decode()
        if kind == "string":
            out[key.decode()] = await r.get(key)
        elif kind == "hash":
            out[key.decode()] = await r.hgetall(key)
        elif kind == "set":
            out[key.decode()] = await r.smembers(key)
    return out


async def test_worked_example_matches_kato_keys(redis_store: RedisStore, unique_id: str) -> None:
    node = f"node-{unique_id}"
    kb = kb_id(node)
    for ev in learns(node):
        assert await redis_store.write_learn(ev) is True
    r = redis_store.client
    # Raw keys, as a KATO client reading Redis directly sees them.
    assert await r.get(f"{kb}:frequency:{P1}") == b"4"
    assert json.loads(await r.get(f"{kb}:emotives:{P1}")) == EXPECTED["p1"]["emotives"]  # type: ignore[index]
    assert json.loads(await r.get(f"{kb}:metadata:{P1}")) == EXPECTED["p1"]["metadata"]  # type: ignore[index]
    assert await r.get(f"{kb}:frequency:{P2}") == b"1"
    assert await r.get(f"{kb}:emotives:{P2}") == b"[]"  # always written for a new pattern
    assert await r.get(f"{kb}:metadata:{P2}") == b"{}"
    assert await r.smembers(f"{kb}:symbol_to_patterns:b") == {P1.encode(), P2.encode()}
    assert await redis_store.get_pattern_meta(node, P1) == EXPECTED["p1"]
    assert await redis_store.get_pattern_meta(node, P2) == EXPECTED["p2"]
    freq, pmf = await redis_store.get_symbol_stats(node)
    assert freq == EXPECTED["symbols_freq"]
    assert pmf == EXPECTED["pmf"]
    assert await redis_store.get_globals(node) == EXPECTED["globals"]
    for s in "abc":
        aff = await redis_store.get_affinity(node, s)
        assert aff == pytest.approx(EXPECTED["affinity_abc"])
    assert await redis_store.get_affinity(node, "d") == {}


async def test_redis_agrees_with_knowledge_base(redis_store: RedisStore, unique_id: str) -> None:
    node = f"node-{unique_id}"
    events = learns(node)
    for ev in events:
        await redis_store.write_learn(ev)
    kb = applied(node, events)
    for name, rec in kb.patterns.items():
        assert await redis_store.get_pattern_meta(node, name) == {
            "frequency": rec.frequency,
            "emotives": rec.emotives,
            "metadata": rec.metadata,
        }
    freq, pmf = await redis_store.get_symbol_stats(node)
    assert freq == dict(kb.symbol_freq) and pmf == dict(kb.pmf)
    assert await redis_store.get_globals(node) == {
        "total_symbols_in_patterns_frequencies": kb.total_symbols_in_patterns_frequencies,
        "total_pattern_frequencies": kb.total_pattern_frequencies,
        "total_unique_patterns": kb.total_unique_patterns,
    }
    for s, aff in kb.affinity.items():
        assert await redis_store.get_affinity(node, s) == pytest.approx(aff)


async def test_replay_does_not_double_count(redis_store: RedisStore, unique_id: str) -> None:
    node = f"node-{unique_id}"
    events = learns(node)
    for ev in events:
        await redis_store.write_learn(ev)
    before = await _snapshot(redis_store, node)
    assert [await redis_store.write_learn(ev) for ev in events] == [False] * 5
    # Concurrent redeliveries of one new learn apply once.
    extra = LearnEvent(node, "m9", P2, (("b",), ("d", "d")), emotives=({"joy": 1.0},))
    results = await asyncio.gather(*(redis_store.write_learn(extra) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    after = await _snapshot(redis_store, node)
    assert after[f"{kb_id(node)}:frequency:{P2}"] == b"2"
    del after[f"{kb_id(node)}:frequency:{P2}"], before[f"{kb_id(node)}:frequency:{P2}"]
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {
        f"{kb_id(node)}:emotives:{P2}",
        f"{kb_id(node)}:symbols:freq",
        f"{kb_id(node)}:global:total_symbols_in_patterns_frequencies",
        f"{kb_id(node)}:affinity:b",
        f"{kb_id(node)}:affinity:d",
    }


async def test_clear_node_deletes_kb_keys_only(redis_store: RedisStore, unique_id: str) -> None:
    node, other = f"node-{unique_id}", f"other-{unique_id}"
    events = learns(node)
    for ev in events + learns(other):
        await redis_store.write_learn(ev)
    await redis_store.put_prediction(node, "obs-1", [{"name": P1}])
    assert await redis_store.clear_node(node, "c1") is True
    assert await _snapshot(redis_store, node) == {}
    assert await redis_store.clear_node(node, "c1") is False  # replayed clear: no-op
    # Echoes of old learns do not come back; a new learn does, as a new pattern.
    assert await redis_store.write_learn(events[0]) is False
    assert await redis_store.write_learn(LearnEvent(node, "m7", P1, events[0].events)) is True
    assert (await redis_store.get_pattern_meta(node, P1)) == {
        "frequency": 1,
        "emotives": [],
        "metadata": {},
    }
    assert (await redis_store.get_globals(other))["total_unique_patterns"] == 2


async def test_precomputed_and_prediction_keys(redis_store: RedisStore, unique_id: str) -> None:
    node = f"node-{unique_id}"
    kb = kb_id(node)
    await redis_store.write_precomputed(node, P1, Precomputed(1.5, 0.25, 0.125, {"a": 0.5}))
    r = redis_store.client
    assert await r.get(f"{kb}:entropy:{P1}") == b"1.5"
    assert await r.get(f"{kb}:normalized_entropy:{P1}") == b"0.25"
    assert await r.get(f"{kb}:global_normalized_entropy:{P1}") == b"0.125"
    assert json.loads(await r.get(f"{kb}:tf_vector:{P1}")) == {"a": 0.5}
    await redis_store.put_prediction(node, "obs-x", [{"name": P1, "potential": 1.0}])
    assert json.loads(await r.get(f"{kb}:prediction:obs-x")) == [{"name": P1, "potential": 1.0}]


async def test_latest_record_with_ttl(redis_store: RedisStore, unique_id: str) -> None:
    sid = f"s-{unique_id}"
    assert await redis_store.get_latest(sid) is None
    await redis_store.set_latest(sid, {"session_id": sid, "stm_length": 2})
    assert await redis_store.get_latest(sid) == {"session_id": sid, "stm_length": 2}
    ttl = await redis_store.client.ttl(f"kato-stream:session:{sid}:latest")
    assert 0 < ttl <= redis_store.settings.latest_ttl
    await redis_store.set_latest(sid, b'{"raw": true}', ttl=5)
    assert await redis_store.get_latest(sid) == {"raw": True}
    assert 0 < await redis_store.client.ttl(f"kato-stream:session:{sid}:latest") <= 5


async def test_session_registry(redis_store: RedisStore, unique_id: str) -> None:
    sid = f"session-{unique_id}"
    data = {"session_id": sid, "node_id": "n1", "stm": [["a"]]}
    assert await redis_store.get_session(sid) is None
    assert await redis_store.session_ttl(sid) == -2
    await redis_store.put_session(sid, data, ttl=100)
    assert await redis_store.client.sismember(ACTIVE_INDEX, sid)
    assert await redis_store.get_session(sid) == data
    assert 90 < await redis_store.session_ttl(sid) <= 100
    assert await redis_store.extend_session(sid, 1000) is True
    assert 990 < await redis_store.session_ttl(sid) <= 1000
    assert await redis_store.get_session(sid, extend_ttl=50) == data
    assert 40 < await redis_store.session_ttl(sid) <= 50
    count = await redis_store.count_active()
    assert count >= 1
    await redis_store.set_latest(sid, {"x": 1})
    assert await redis_store.delete_session(sid, node_id="n1") is True
    assert await redis_store.get_session(sid) is None
    assert await redis_store.get_latest(sid) is None
    assert not await redis_store.client.sismember(ACTIVE_INDEX, sid)
    assert await redis_store.delete_session(sid) is False
    assert await redis_store.extend_session(sid, 10) is False


async def test_session_expires(redis_store: RedisStore, unique_id: str) -> None:
    sid = f"session-{unique_id}"
    await redis_store.put_session(sid, {"a": 1}, ttl=1)
    await asyncio.sleep(1.3)
    assert await redis_store.get_session(sid) is None


async def test_unreachable_redis_is_a_clear_error(stack_settings: Settings) -> None:
    settings = dataclasses.replace(
        stack_settings, redis_url=f"redis://:pw@127.0.0.1:{free_port()}/0", store_timeout=1
    )
    store = RedisStore(settings)
    with pytest.raises(
        StoreUnavailableError, match=r"Redis at redis://:\*\*\*@127\.0\.0\.1:\d+/0 unavailable"
    ):
        await store.start()
    with pytest.raises(StoreError, match="not started"):
        await store.get_latest("x")


async def test_redis_going_away_mid_run_is_a_clear_error(
    stack_settings: Settings, tmp_path: Path
) -> None:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("needs redis-server")
    port = free_port()
    proc = redis_process(binary, tmp_path / "r", port)
    proc.start()
    try:
        url = f"redis://127.0.0.1:{port}/0"
        await wait_redis(url, 20, proc)
        store = RedisStore(dataclasses.replace(stack_settings, redis_url=url, store_timeout=1))
        await store.start()
        await store.set_latest("s", {"a": 1})
        proc.stop()
        with pytest.raises(StoreUnavailableError, match="unavailable"):
            await store.get_latest("s")
        await store.stop()
    finally:
        proc.stop()
