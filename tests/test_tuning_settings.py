"""Every performance-tuning setting (docs/tuning.md) reaches the code that uses it."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from pathlib import Path
from typing import Any

import pytest
import redis

from kato_stream.core.engine import Command, Engine
from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.core.vectors import MemoryVectorIndex
from kato_stream.settings import Settings, SettingsError
from kato_stream.stores import ClickHouseStore, QdrantStore
from kato_stream.stores.prediction_cache import apply_redis_memory
from kato_stream.stores.qdrant import collection_tuning
from kato_stream.stream.engine_adapter import CoreEngineAdapter


@pytest.fixture(autouse=True)
def _restore_gc() -> Any:
    """build_worker tunes the process's GC: give it back as it was to the next test."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def engine_for(env: dict[str, str]) -> Engine:
    return CoreEngineAdapter.from_settings(Settings.from_env(env)).engine


def run(
    engine: Engine, kb: KnowledgeBase, cmds: list[tuple[str, Any]], sid: str = "s"
) -> list[Any]:
    st, out = None, []
    for i, (op, payload) in enumerate(cmds):
        r = engine.handle(
            Command(op, sid, kb.node_id, payload, f"{sid}-{i}"), st, kb, MemoryVectorIndex()
        )
        st = r.state
        out.append(r)
    return out


def obs(*symbols: str) -> tuple[str, dict[str, Any]]:
    return ("observe", {"strings": list(symbols)})


def trained_kb() -> KnowledgeBase:
    kb = KnowledgeBase(node_id="n")
    engine = Engine()
    for k, seq in enumerate([["a", "b", "c", "d"], ["a", "x", "y", "z"], ["q", "r", "s", "t"]]):
        run(engine, kb, [*(obs(s) for s in seq), ("learn", {})], sid=f"t{k}")
    return kb


# -- engine defaults ------------------------------------------------------------------------


def test_recall_threshold_default_and_session_override() -> None:
    engine = engine_for({"RECALL_THRESHOLD": "0.45"})
    kb = trained_kb()
    r = run(engine, kb, [obs("a"), obs("b")])[-1]
    assert r.recall_threshold == 0.45
    assert r.predictions and all(p["similarity"] >= 0.45 for p in r.predictions)
    # per-session config still overrides the process default
    r = run(engine, kb, [("configure", {"recall_threshold": 0.05}), obs("a"), obs("b")])[-1]
    assert r.recall_threshold == 0.05
    assert {p["name"] for p in r.predictions} > {
        p["name"] for p in run(engine, kb, [obs("a"), obs("b")])[-1].predictions
    }


def test_max_predictions() -> None:
    kb = trained_kb()
    r = run(
        engine_for({"MAX_PREDICTIONS": "1", "RECALL_THRESHOLD": "0.0"}), kb, [obs("a"), obs("b")]
    )
    assert len(r[-1].predictions) == 1


@pytest.mark.parametrize(("mode", "left"), [("CLEAR", 0), ("ROLLING", 2)])
def test_max_pattern_length_and_stm_mode(mode: str, left: int) -> None:
    engine = engine_for({"MAX_PATTERN_LENGTH": "3", "STM_MODE": mode})
    kb = KnowledgeBase(node_id="n")
    r = run(engine, kb, [obs("a"), obs("b"), obs("c")])[-1]
    assert r.response["auto_learned_pattern"] and len(r.state.stm) == left
    assert len(kb.patterns) == 1


def test_matching_options_become_engine_defaults() -> None:
    env = {
        "KATO_STREAM_FILTER_PIPELINE": "length,jaccard",
        "KATO_STREAM_LENGTH_MIN_RATIO": "0.25",
        "KATO_STREAM_LENGTH_MAX_RATIO": "3.0",
        "KATO_STREAM_JACCARD_THRESHOLD": "0.4",
        "KATO_STREAM_JACCARD_MIN_OVERLAP": "3",
        "KATO_STREAM_MINHASH_THRESHOLD": "0.6",
        "KATO_STREAM_MINHASH_BANDS": "10",
        "KATO_STREAM_MINHASH_ROWS": "4",
        "KATO_STREAM_MINHASH_NUM_HASHES": "40",
    }
    engine = engine_for(env)
    p = engine.session_params(run(engine, KnowledgeBase("n"), [obs("a")])[0].state.config)
    assert (p.filter_pipeline, p.length_min_ratio, p.length_max_ratio) == (
        ("length", "jaccard"),
        0.25,
        3.0,
    )
    assert (p.jaccard_threshold, p.jaccard_min_overlap) == (0.4, 3)
    assert (p.minhash_threshold, p.minhash_bands, p.minhash_rows, p.minhash_num_hashes) == (
        0.6,
        10,
        4,
        40,
    )
    with pytest.raises(SettingsError, match="FILTER_PIPELINE"):
        Settings.from_env({"KATO_STREAM_FILTER_PIPELINE": "length,nope"})


def test_recall_floor_raises_threshold_but_never_lowers_it() -> None:
    engine, kb = Engine(), trained_kb()
    cmds = [obs("a"), obs("b"), obs("x")]
    base = run(engine, kb, cmds)[-1]
    st = None
    for i, (op, payload) in enumerate(cmds):
        r = engine.handle(Command(op, "f", "n", payload, f"f{i}"), st, kb, MemoryVectorIndex(), 0.6)
        st = r.state
    assert base.recall_threshold == 0.1 and r.recall_threshold == 0.6
    assert all(p["similarity"] >= 0.6 for p in r.predictions)
    assert len(r.predictions) < len(base.predictions)
    high = run(engine, kb, [("configure", {"recall_threshold": 0.9}), *cmds])[-1].state
    r = engine.handle(Command("predict", "s", "n", {}, "p"), high, kb, MemoryVectorIndex(), 0.6)
    assert r.recall_threshold == 0.9


# -- stream wiring ------------------------------------------------------------------------


def test_worker_wiring(tmp_path: Path) -> None:
    from kato_stream.stream.app import build_worker

    s = Settings.from_env(
        {
            "KATO_STREAM_DATA_DIR": str(tmp_path),
            "KATO_STREAM_PRODUCER_COMPRESSION": "gzip",
            "KATO_STREAM_PRODUCER_LINGER_MS": "25",
            "KATO_STREAM_PRODUCER_BATCH_BYTES": "65536",
            "KATO_STREAM_PARTITIONS": "6",
            "KATO_STREAM_ADAPTIVE_RECALL": "true",
            "KATO_STREAM_ADAPTIVE_RECALL_MAX": "0.7",
            "KATO_STREAM_PREDICTION_CACHE": "true",
            "KATO_STREAM_PREDICTION_CACHE_TTL": "9",
        }
    )
    w = build_worker(s)
    conf = w.app.conf
    assert conf.producer_compression_type == "gzip"
    assert conf.producer_linger == 0.025
    assert conf.producer_max_batch_size == 65536
    assert conf.topic_partitions == 6 and w.input_topic.partitions == 6
    adapter = w.processor.engine
    assert isinstance(adapter, CoreEngineAdapter)
    assert w.adaptive is not None and adapter.adaptive is w.adaptive
    assert w.adaptive.bounds.maximum == 0.7
    assert w.prediction_cache is not None and adapter.engine.predictor is w.prediction_cache
    assert w.prediction_cache.ttl == 9
    off = build_worker(
        dataclasses.replace(
            s, adaptive_recall=False, prediction_cache=False, producer_compression="none"
        )
    )
    assert off.adaptive is None and off.prediction_cache is None
    assert off.app.conf.producer_compression_type is None


def test_worker_gc_threshold(tmp_path: Path) -> None:
    from kato_stream.stream.app import build_worker

    python_default = gc.get_threshold()
    env = {"KATO_STREAM_DATA_DIR": str(tmp_path)}
    build_worker(Settings.from_env(env))  # the default: young passes every 20,000 allocations
    assert gc.get_threshold() == (20_000, *python_default[1:])
    build_worker(Settings.from_env(env | {"KATO_STREAM_GC_THRESHOLD": "5000"}))
    assert gc.get_threshold() == (5000, *python_default[1:])
    gc.set_threshold(*python_default)
    build_worker(Settings.from_env(env | {"KATO_STREAM_GC_THRESHOLD": "0"}))  # 0: Python's own
    assert gc.get_threshold() == python_default
    with pytest.raises(SettingsError, match="KATO_STREAM_GC_THRESHOLD"):
        Settings.from_env({"KATO_STREAM_GC_THRESHOLD": "-1"})


def test_compression_needs_its_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka import codec

    with pytest.raises(SettingsError):
        Settings.from_env({"KATO_STREAM_PRODUCER_COMPRESSION": "brotli"})
    for name in ("gzip", "lz4", "snappy", "zstd"):  # cramjam is a dependency: all load
        env = {"KATO_STREAM_PRODUCER_COMPRESSION": name}
        assert Settings.from_env(env).producer_compression == name
    # an install without cramjam: aiokafka would refuse to start the producer, so does this
    monkeypatch.setattr(codec, "has_zstd", lambda: False)
    with pytest.raises(SettingsError, match="PRODUCER_COMPRESSION"):
        Settings.from_env({"KATO_STREAM_PRODUCER_COMPRESSION": "zstd"})


@pytest.mark.parametrize(
    ("env", "raw"),
    [
        ("KATO_STREAM_REDIS_MAXMEMORY_POLICY", "allkeys-lru"),  # would evict patterns
        ("KATO_STREAM_REDIS_MAXMEMORY", "lots"),
        ("KATO_STREAM_QDRANT_QUANTIZATION", "binary"),
        ("KATO_STREAM_ADAPTIVE_RECALL_STEP", "0"),
    ],
)
def test_bad_tuning_values_rejected(env: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=env):
        Settings.from_env({env: raw})


def test_adaptive_cross_field_rule() -> None:
    with pytest.raises(SettingsError, match="MIN"):
        Settings.from_env(
            {"KATO_STREAM_ADAPTIVE_RECALL_MIN": "0.6", "KATO_STREAM_ADAPTIVE_RECALL_MAX": "0.5"}
        )


# -- stores ---------------------------------------------------------------------------------


def test_qdrant_collection_tuning(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "KATO_STREAM_QDRANT_HNSW_M": "8",
            "KATO_STREAM_QDRANT_HNSW_EF_CONSTRUCT": "64",
            "KATO_STREAM_QDRANT_FULL_SCAN_THRESHOLD": "500",
            "KATO_STREAM_QDRANT_QUANTIZATION": "int8",
        }
    )
    t = collection_tuning(s)
    hnsw = t["hnsw_config"]
    assert (hnsw.m, hnsw.ef_construct, hnsw.full_scan_threshold) == (8, 64, 500)
    assert t["quantization_config"].scalar.type.value == "int8"
    assert collection_tuning(Settings())["quantization_config"] is None

    async def create_one() -> dict[str, Any]:
        store = QdrantStore(s, url=f"file://{tmp_path}")
        await store.start()
        seen: dict[str, Any] = {}
        real = store._c.create_collection

        def spy(*args: Any, **kwargs: Any) -> Any:
            seen.update(kwargs)
            return real(*args, **kwargs)

        store._c.create_collection = spy  # type: ignore[method-assign]
        try:
            await store.add("n", [("VCTR|a", (1.0, 2.0))])
        finally:
            await store.stop()
        return seen

    seen = asyncio.run(create_one())
    assert seen["hnsw_config"] == hnsw and seen["quantization_config"] == t["quantization_config"]


@pytest.mark.stack
def test_clickhouse_batch_size_triggers_insert(stack_settings: Settings, unique_id: str) -> None:
    s = dataclasses.replace(stack_settings, clickhouse_batch_size=3, store_flush_seconds=60.0)

    def ev(i: int) -> LearnEvent:
        return LearnEvent(unique_id, f"l{i}", f"p{i}", (("a", f"b{i}"),))

    async def go() -> tuple[int, int]:
        async with ClickHouseStore(s) as store:
            store.add_learn(ev(0))
            store.add_learn(ev(1))
            await asyncio.sleep(0.3)
            below = store.pending  # under the batch size and long before the interval
            store.add_learn(ev(2))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if store.pending == 0:
                    break
            return below, store.pending

    assert asyncio.run(go()) == (2, 0)


@pytest.mark.stack
def test_redis_memory_settings_applied(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    before = client.config_get("maxmemory*")
    try:
        applied = apply_redis_memory(client, "", "volatile-lru")
        assert applied == {"maxmemory-policy": "volatile-lru"}
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
        assert client.config_get("maxmemory")["maxmemory"] == before["maxmemory"]  # "" = unchanged
    finally:
        client.config_set("maxmemory-policy", before["maxmemory-policy"])
        client.close()
