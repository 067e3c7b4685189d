"""In-memory nearest-vector index behaves like KATO's Qdrant use (spec §2.2, §4.6)."""

from __future__ import annotations

from kato_stream.core.vectors import MemoryVectorIndex, VectorIndex


def test_nearest_first_top_k() -> None:
    idx = MemoryVectorIndex()
    assert isinstance(idx, VectorIndex)
    assert idx.search([0.0, 0.0]) == []
    for name, v in [("a", [0.0, 0.0]), ("b", [1.0, 0.0]), ("c", [3.0, 0.0]), ("d", [5.0, 0.0])]:
        idx.add(name, v)
    assert idx.search([0.9, 0.0]) == ["b", "a", "c"]
    assert idx.search([0.9, 0.0], k=1) == ["b"]


def test_ties_by_name() -> None:
    idx = MemoryVectorIndex()
    idx.add("z", [1.0])
    idx.add("y", [-1.0])
    idx.add("x", [1.0])
    assert idx.search([0.0], k=3) == ["x", "y", "z"]


def test_dimension_mismatch_ignored() -> None:
    idx = MemoryVectorIndex()
    idx.add("a", [1.0, 2.0])
    idx.add("b", [1.0, 2.0, 3.0])  # ignored: the first vector fixed the dimension
    assert len(idx) == 1
    assert idx.search([1.0, 2.0, 3.0]) == []
    idx.clear()
    assert len(idx) == 0
    idx.add("b", [1.0, 2.0, 3.0])
    assert idx.search([1.0, 2.0, 3.0]) == ["b"]


def test_upsert() -> None:
    idx = MemoryVectorIndex()
    idx.add("a", [0.0])
    idx.add("a", [10.0])
    idx.add("b", [4.0])
    assert idx.search([9.0], k=1) == ["a"]
    assert len(idx) == 2
