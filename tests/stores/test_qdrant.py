"""Qdrant store in local mode (a fresh dir per test): KATO's layout, search, clear."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from kato_stream.core.naming import vector_name
from kato_stream.core.vectors import MemoryVectorIndex, VectorIndex
from kato_stream.embedded import free_port
from kato_stream.settings import Settings
from kato_stream.stores import QdrantStore, QdrantVectorIndex, StoreError, StoreUnavailableError
from kato_stream.stores.qdrant import point_id

pytestmark = pytest.mark.timeout(120)

VECS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0), (0.5, 0.5, 0.5)]


def named(values: tuple[float, ...]) -> tuple[str, tuple[float, ...]]:
    return vector_name(values), values


async def test_collection_layout_and_search(qdrant_store: QdrantStore) -> None:
    node = "node-a"
    assert await qdrant_store.search(node, [1.0, 0.0, 0.0]) == []  # no collection yet
    assert await qdrant_store.add(node, [named(v) for v in VECS]) == 5
    coll = qdrant_store.collection(node)
    assert coll == "vectors_node_a_kato"
    c = qdrant_store._c
    info = c.get_collection(coll)
    assert info.config.params.vectors.size == 3  # type: ignore[union-attr]
    assert str(info.config.params.vectors.distance.value) == "Euclid"  # type: ignore[union-attr]
    # (local mode ignores hnsw_config: it searches by brute force; a server keeps m/ef_construct)
    name = vector_name((1.0, 0.0, 0.0))
    (rec,) = c.retrieve(coll, [point_id(name)], with_payload=True)
    assert rec.payload == {"vctr_name": name, "values": [1.0, 0.0, 0.0]}
    assert rec.id == str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    assert await qdrant_store.search(node, [0.9, 0.1, 0.0], k=1) == [name]
    assert await qdrant_store.count(node) == 5


async def test_ties_are_ordered_by_name(qdrant_store: QdrantStore) -> None:
    node = "ties"
    pts = [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0), (3.0, 3.0)]
    await qdrant_store.add(node, [named(p) for p in pts])
    four = sorted(vector_name(p) for p in pts[:4])
    assert await qdrant_store.search(node, [0.0, 0.0], k=3) == four[:3]
    idx = await qdrant_store.index(node)
    assert idx.search([0.0, 0.0], k=3) == four[:3]


async def test_dimension_mismatch_is_ignored(qdrant_store: QdrantStore) -> None:
    node = "dims"
    assert await qdrant_store.add(node, [named((1.0, 2.0, 3.0)), named((1.0, 2.0))]) == 1
    assert await qdrant_store.add(node, [named((5.0, 5.0))]) == 0
    assert await qdrant_store.search(node, [1.0, 2.0]) == []
    assert await qdrant_store.count(node) == 1


async def test_clear_deletes_the_collection(qdrant_store: QdrantStore) -> None:
    await qdrant_store.add("n1", [named(v) for v in VECS])
    await qdrant_store.add("n2", [named(v) for v in VECS[:2]])
    assert await qdrant_store.clear("n1") is True
    assert not qdrant_store._c.collection_exists(qdrant_store.collection("n1"))
    assert await qdrant_store.search("n1", [1.0, 0.0, 0.0]) == []
    assert await qdrant_store.clear("n1") is False
    assert await qdrant_store.count("n2") == 2  # isolation
    # After a clear the next insert fixes a new dimension.
    assert await qdrant_store.add("n1", [named((1.0, 2.0))]) == 1


async def test_vector_index_matches_memory_index_and_persists(stack_settings: Settings) -> None:
    node = "idx"
    mem = MemoryVectorIndex()
    async with QdrantStore(stack_settings) as store:
        idx = await store.index(node)
        assert isinstance(idx, VectorIndex)
        for v in VECS:
            name, values = named(v)
            idx.add(name, values)
            mem.add(name, values)
        idx.add(*named((1.0, 2.0)))  # wrong dimension: skipped
        assert len(idx) == 5 and idx.pending == 5
        queries = [[0.9, 0.1, 0.0], [0.4, 0.6, 0.5], [0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]
        for q in queries:
            assert idx.search(q, 3) == mem.search(q, 3)
        assert idx.search([1.0, 2.0]) == []
        await idx.flush()
        assert idx.pending == 0
        assert await store.count(node) == 5
        idx.add(*named((0.2, 0.2, 0.2)))  # left pending: stop() must flush it
    async with QdrantStore(stack_settings) as store:  # a worker with an empty cache
        rebuilt = await store.index(node)
        assert len(rebuilt) == 6
        for q in queries:
            assert rebuilt.search(q, 3) == idx.search(q, 3)
        rebuilt.clear()
        assert rebuilt.search([0.0, 0.0, 0.0]) == [] and rebuilt.pending == 1
        await store.flush()
        assert await store.count(node) == 0
        assert not store._c.collection_exists(store.collection(node))


async def test_store_flush_loop_writes_pending(qdrant_store: QdrantStore) -> None:
    idx = await qdrant_store.index("loop")
    assert isinstance(idx, QdrantVectorIndex)
    idx.add(*named((1.0, 1.0)))
    for _ in range(100):
        if idx.pending == 0:
            break
        await asyncio.sleep(0.02)
    assert await qdrant_store.count("loop") == 1


async def test_local_dir_in_use_is_a_clear_error(qdrant_store: QdrantStore) -> None:
    with pytest.raises(StoreUnavailableError, match="already accessed"):
        await QdrantStore(qdrant_store.settings).start()


async def test_rebuild_keeps_exact_values(stack_settings: Settings) -> None:
    vec = named((0.1, 0.7, 1 / 3))  # not representable in Qdrant's float32
    async with QdrantStore(stack_settings) as store:
        await store.add("exact", [vec])
    async with QdrantStore(stack_settings) as store:
        assert await store.load("exact") == [vec]


async def test_unreachable_server_is_a_clear_error(stack_settings: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = QdrantStore(dataclasses.replace(stack_settings, qdrant_url=url, store_timeout=1))
    with pytest.raises(StoreUnavailableError, match=f"Qdrant at {url} unavailable"):
        await store.start()
    with pytest.raises(StoreError, match="not started"):
        await store.search("n", [1.0])
