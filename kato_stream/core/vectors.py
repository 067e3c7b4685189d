"""Nearest-vector lookup used to turn an observed vector into symbols (spec §2.2).

KATO asks Qdrant for the 3 nearest stored vectors (Euclidean, no threshold) and
swallows every error, so a vector whose dimension differs from the collection's
simply has no neighbours.  ``MemoryVectorIndex`` reproduces that in memory with
deterministic ties (by name), for tests and the embedded engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class VectorIndex(Protocol):
    """Where learned vectors are indexed and searched (Qdrant in production)."""

    def search(self, values: Sequence[float], k: int = 3) -> list[str]:
        """Names of the ``k`` nearest stored vectors, nearest first; ``[]`` on any mismatch."""
        ...

    def add(self, name: str, values: Sequence[float]) -> None:
        """Store (upsert) one vector; a dimension mismatch is ignored, as in KATO."""
        ...

    def clear(self) -> None:
        """Forget every vector (clear-all)."""
        ...


class MemoryVectorIndex:
    """Brute-force Euclidean index; the first stored vector fixes the dimension."""

    def __init__(self) -> None:
        self._vectors: dict[str, npt.NDArray[np.float64]] = {}
        self._dim: int | None = None

    def __len__(self) -> int:
        return len(self._vectors)

    def add(self, name: str, values: Sequence[float]) -> None:
        arr = np.asarray(values, dtype=np.float64)
        if self._dim is None:
            self._dim = int(arr.shape[0])
        elif arr.shape[0] != self._dim:
            return
        self._vectors[name] = arr

    def search(self, values: Sequence[float], k: int = 3) -> list[str]:
        if not self._vectors or k <= 0:
            return []
        q = np.asarray(values, dtype=np.float64)
        if q.shape[0] != self._dim:
            return []
        scored: list[tuple[float, str]] = []
        for name, vec in self._vectors.items():
            d = float(np.sqrt(np.sum((vec - q) ** 2)))
            scored.append((math.inf if math.isnan(d) else d, name))
        scored.sort()
        return [name for _, name in scored[:k]]

    def clear(self) -> None:
        self._vectors.clear()
        self._dim = None
