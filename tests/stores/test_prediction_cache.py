"""Prediction cache on the real Redis: byte-identical answers, invalidation by learn/clear, TTL,
sharing between workers with the same knowledge base, fallback when Redis is down."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from kato_stream import metrics
from kato_stream.core.engine import Command, Engine
from kato_stream.core.knowledge import KnowledgeBase
from kato_stream.core.predictions import PredictParams, predict
from kato_stream.core.session import SessionState
from kato_stream.core.vectors import MemoryVectorIndex
from kato_stream.embedded import free_port
from kato_stream.stores.prediction_cache import PredictionCache, cache_key
from kato_stream.stream import codecs

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

VOCAB = [f"s{i}" for i in range(12)]


@pytest.fixture
def cache(redis_url: str) -> Iterator[PredictionCache]:
    c = PredictionCache(redis_url, ttl=60, timeout=1.0)
    asyncio.run(c.start())  # the cache's client is blocking: no loop needed after
    yield c
    asyncio.run(c.stop())


def _observe(engine: Engine, kb: KnowledgeBase, st: SessionState | None, cmd: Command) -> Any:
    return engine.handle(cmd, st, kb, MemoryVectorIndex())


def build_kb(node: str, n: int = 30, seed: int = 7) -> KnowledgeBase:
    """``n`` learned patterns with emotives (so affinity ranking has data)."""
    rnd = random.Random(seed)
    engine = Engine()
    kb = KnowledgeBase(node_id=node)
    st: SessionState | None = None
    for i in range(n):
        for j in range(rnd.randint(2, 4)):
            payload = {
                "strings": rnd.sample(VOCAB, rnd.randint(1, 3)),
                "emotives": {"joy": rnd.uniform(-1, 1)},
            }
            st = _observe(
                engine, kb, st, Command("observe", "trainer", node, payload, f"o{i}.{j}")
            ).state
        st = _observe(engine, kb, st, Command("learn", "trainer", node, {}, f"l{i}")).state
    return kb


PARAMS = [
    PredictParams(),
    PredictParams(recall_threshold=0.3, max_predictions=5),
    PredictParams(rank_sort_algo="similarity"),
    PredictParams(use_token_matching=False),
    PredictParams(fuzzy_token_threshold=0.8),
    PredictParams(affinity_emotive="joy", rank_sort_algo="weighted_similarity"),
    PredictParams(filter_pipeline=("length", "jaccard")),
]


def stms(seed: int = 11) -> list[list[list[str]]]:
    rnd = random.Random(seed)
    out: list[list[list[str]]] = [[["s1"]], [["s3"]]]  # single symbol: the fast path
    while len(out) < 10:
        stm = [sorted(rnd.sample(VOCAB, rnd.randint(1, 3))) for _ in range(rnd.randint(1, 3))]
        if stm not in out:
            out.append(stm)
    return out


def as_bytes(res: Any) -> bytes:
    return codecs.dumps(dataclasses.asdict(res))


def test_cached_predictions_are_byte_identical(cache: PredictionCache, unique_id: str) -> None:
    kb = build_kb(unique_id)
    hits0 = metrics.PREDICTION_CACHE_HITS._value.get()
    misses0 = metrics.PREDICTION_CACHE_MISSES._value.get()
    n = 0
    for stm in stms():
        for p in PARAMS:
            expected = as_bytes(predict(kb, stm, p))
            assert as_bytes(cache(kb, stm, p)) == expected  # miss: computed and stored
            assert as_bytes(cache(kb, stm, p)) == expected  # hit: decoded from Redis
            n += 1
    assert (cache.misses, cache.hits, cache.errors) == (n, n, 0)
    assert metrics.PREDICTION_CACHE_HITS._value.get() - hits0 == n
    assert metrics.PREDICTION_CACHE_MISSES._value.get() - misses0 == n


def test_engine_outputs_identical_with_cache(cache: PredictionCache, unique_id: str) -> None:
    """Whole command results (response, predictions, future_potentials) through the engine."""
    kb = build_kb(unique_id)
    plain, cached = Engine(), Engine(predictor=cache)
    for engine_round in range(2):  # second round is served from the cache
        outs: list[bytes] = []
        for engine in (plain, cached):
            st: SessionState | None = None
            blob = b""
            for k, ev in enumerate([["s1"], ["s2", "s5"], ["s3"], ["s7", "s8"]]):
                r = _observe(
                    engine, kb, st, Command("observe", "s", unique_id, {"strings": ev}, f"x{k}")
                )
                st = r.state
                p = _observe(engine, kb, st, Command("predict", "s", unique_id, {}, None, "t:0:1"))
                blob += codecs.dumps([r.response, r.predictions, r.future_potentials, p.response])
            outs.append(blob)
        assert outs[0] == outs[1], engine_round
    assert cache.hits > 0


def test_learn_invalidates(cache: PredictionCache, unique_id: str) -> None:
    kb = build_kb(unique_id, n=5)
    stm = [["s1", "s2"], ["s3"]]
    p = PredictParams()
    before = cache(kb, stm, p)
    old_key = cache_key(kb, stm, p)
    assert as_bytes(cache(kb, stm, p)) == as_bytes(before) and cache.hits == 1
    engine = Engine()
    st = None
    for k, ev in enumerate(stm):
        st = _observe(
            engine, kb, st, Command("observe", "other", unique_id, {"strings": ev}, f"n{k}")
        ).state
    _observe(engine, kb, st, Command("learn", "other", unique_id, {}, "new-learn"))
    assert cache_key(kb, stm, p) != old_key
    after = cache(kb, stm, p)
    assert cache.misses == 2  # the learn made the old entry unreachable
    assert as_bytes(after) == as_bytes(predict(kb, stm, p)) != as_bytes(before)
    assert any(
        x["frequency"] >= 1 and x["matches"] == ["s1", "s2", "s3"] for x in after.predictions
    )
    # clear-all changes the fingerprint too
    key = cache_key(kb, stm, p)
    kb.clear("clear:x")
    assert cache_key(kb, stm, p) != key
    assert cache(kb, stm, p).predictions == []


def test_workers_with_same_kb_share_entries(cache: PredictionCache, unique_id: str) -> None:
    a, b = build_kb(unique_id), build_kb(unique_id)  # same learns, same order: "two workers"
    assert a.fingerprint == b.fingerprint != ""
    stm, p = [["s1"], ["s2", "s3"]], PredictParams()
    cache(a, stm, p)
    cache(b, stm, p)
    assert (cache.misses, cache.hits) == (1, 1)
    other = build_kb(unique_id + "x")  # same patterns, another node: never shared
    cache(other, stm, p)
    assert cache.misses == 2


def test_entries_expire(cache: PredictionCache, redis_url: str, unique_id: str) -> None:
    kb = build_kb(unique_id, n=3)
    stm, p = [["s1"], ["s2"]], PredictParams()
    cache(kb, stm, p)
    ttl = redis.Redis.from_url(redis_url).ttl(cache_key(kb, stm, p))
    assert 0 < ttl <= 60


def test_unfingerprinted_kb_is_never_cached(cache: PredictionCache, unique_id: str) -> None:
    kb = build_kb(unique_id, n=3)
    kb.fingerprint = ""  # as if filled without apply_learn
    assert not PredictionCache.cacheable(kb, [["s1"]])
    cache(kb, [["s1"], ["s2"]], PredictParams())
    assert (cache.hits, cache.misses) == (0, 0)


def test_redis_down_falls_back_to_computing(unique_id: str) -> None:
    c = PredictionCache(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    asyncio.run(c.start())  # no PING: an unreachable Redis does not fail the start
    kb = build_kb(unique_id, n=5)
    stm, p = [["s1"], ["s2"]], PredictParams()
    assert as_bytes(c(kb, stm, p)) == as_bytes(predict(kb, stm, p))
    assert c.errors == 1 and c.hits == 0
    asyncio.run(c.stop())


def test_from_settings(redis_url: str) -> None:
    from kato_stream.settings import Settings

    s = Settings.from_env(
        {
            "KATO_STREAM_REDIS_URL": redis_url,
            "KATO_STREAM_PREDICTION_CACHE_TTL": "42",
            "KATO_STREAM_PREDICTION_CACHE_TIMEOUT": "0.5",
        }
    )
    c = PredictionCache.from_settings(s)
    assert (c.url, c.ttl, c.timeout) == (redis_url, 42, 0.5)
