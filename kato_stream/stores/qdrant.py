"""Qdrant: a node's vectors, in KATO's layout (spec §7.3).

One collection per knowledge base, ``vectors_{kb_id}``, created on the first insert with
that vector's size, distance EUCLID, HNSW ``m``/``ef_construct`` from settings (KATO: 16/128)
and on-disk payload.  Point id = ``uuid5(NAMESPACE_DNS, vctr_name)``, payload
``{"vctr_name": ..., "values": [...]}`` (KATO reads only ``vctr_name``; ``values`` keeps the
exact float64 values, which Qdrant's float32 vectors lose).  A vector whose dimension differs from the collection's is skipped,
as KATO skips it (the learn still succeeds).  Deviation: clear-all deletes the collection.

The engine core calls its ``VectorIndex`` synchronously and must be deterministic, so
:class:`QdrantVectorIndex` answers searches from an in-memory mirror of the node's vectors
(brute force, ties by name; loaded from Qdrant when the worker first needs the node) and
writes new vectors to Qdrant in batches.

qdrant-client is synchronous (and local mode is brute force in Python, fine below ~20k
vectors per node); every call runs on one private thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from kato_stream.core.vectors import MemoryVectorIndex
from kato_stream.settings import Settings
from kato_stream.stores._util import embedded_path, local_path, redact
from kato_stream.stores.connect import qdrant_client
from kato_stream.stores.errors import StoreUnavailableError
from kato_stream.stores.kb_id import kb_id
from kato_stream.stores.threaded import ThreadedStore

log = logging.getLogger(__name__)

Vector = tuple[str, tuple[float, ...]]


def point_id(vctr_name: str) -> str:
    """KATO's point id of a vector symbol."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, vctr_name))


def collection_tuning(settings: Settings) -> dict[str, Any]:
    """HNSW and quantization of new collections (docs/tuning.md).

    Local mode ignores both (it searches by brute force); a Qdrant server honours them.
    """
    quant = None
    if settings.qdrant_quantization == "int8":
        quant = models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
        )
    return {
        "hnsw_config": models.HnswConfigDiff(
            m=settings.qdrant_hnsw_m,
            ef_construct=settings.qdrant_hnsw_ef_construct,
            full_scan_threshold=settings.qdrant_full_scan_threshold,
        ),
        "quantization_config": quant,
    }


class QdrantStore(ThreadedStore[QdrantClient]):
    """Async service over one Qdrant (``async start()``/``stop()``; stop flushes indexes).

    ``url``: ``http(s)://host:6333`` for a server, ``:memory:`` for a throwaway store,
    ``file:///abs/dir`` (or a bare absolute path) for local mode; empty = local mode under
    ``<data_dir>/qdrant``.  Local mode locks its directory: one client per directory.
    """

    kind = "Qdrant"

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        raw = settings.qdrant_url if url is None else url
        if not raw:
            self.path: str | None = embedded_path(settings.data_dir, "qdrant")
        elif raw == ":memory:":
            self.path = None
        else:
            self.path = local_path(raw, "qdrant")
        super().__init__(settings, raw or f"file://{self.path}")
        self._dims: dict[str, int] = {}
        self._indexes: dict[str, QdrantVectorIndex] = {}

    # -- lifecycle (ThreadedStore) -------------------------------------------------------

    def _forget(self) -> None:
        self._indexes.clear()
        self._dims.clear()

    def _connect(self) -> QdrantClient:
        try:
            if self.path is not None or self.url == ":memory:":
                return qdrant_client(self.settings, self.url, path=self.path)
            # We probe with get_collections ourselves; the version check only warns.
            client = qdrant_client(
                self.settings,
                self.url,
                timeout=int(max(1, self.settings.store_timeout)),
                check_compatibility=False,
            )
            client.get_collections()
            return client
        except Exception as exc:
            raise StoreUnavailableError(f"Qdrant at {redact(self.url)} unavailable: {exc}") from exc

    @property
    def _c(self) -> QdrantClient:
        assert self._client is not None
        return self._client

    def collection(self, node_id: str) -> str:
        """KATO's collection name of the node: ``vectors_{kb_id}``."""
        return f"vectors_{kb_id(node_id, self.settings.service_name)}"

    # -- operations (blocking bodies run on the store thread) -----------------------------

    def _dim(self, coll: str) -> int | None:
        if coll in self._dims:
            return self._dims[coll]
        if not self._c.collection_exists(coll):
            return None
        params = self._c.get_collection(coll).config.params.vectors
        assert isinstance(params, models.VectorParams)
        self._dims[coll] = params.size
        return params.size

    def _add(self, coll: str, vectors: Sequence[Vector]) -> int:
        if not vectors:
            return 0
        dim = self._dim(coll)
        if dim is None:
            dim = len(vectors[0][1])
            self._c.create_collection(
                coll,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.EUCLID),
                on_disk_payload=True,
                **collection_tuning(self.settings),
            )
            self._dims[coll] = dim
        points = []
        for name, values in vectors:
            if len(values) != dim:
                log.info("%s: skipping %s: dimension %d != %d", coll, name, len(values), dim)
                continue
            points.append(
                models.PointStruct(
                    id=point_id(name),
                    vector=list(values),
                    payload={"vctr_name": name, "values": list(values)},
                )
            )
        if points:
            self._c.upsert(coll, points=points, wait=True)
        return len(points)

    def _search(self, coll: str, values: Sequence[float], k: int) -> list[str]:
        dim = self._dim(coll)
        if dim is None or len(values) != dim or k <= 0:
            return []
        # Ask for more than k so that ties at the cut are ordered by name, not by chance.
        res = self._c.query_points(coll, query=list(values), limit=k * 4 + 8, with_payload=True)
        hits = sorted((p.score, str((p.payload or {})["vctr_name"])) for p in res.points)
        return [name for _, name in hits[:k]]

    def _clear(self, coll: str) -> bool:
        self._dims.pop(coll, None)
        if not self._c.collection_exists(coll):
            return False
        self._c.delete_collection(coll)
        return True

    def _load(self, coll: str) -> list[Vector]:
        if self._dim(coll) is None:
            return []
        out: list[Vector] = []
        offset: Any = None
        while True:
            pts, offset = self._c.scroll(
                coll, limit=1000, offset=offset, with_payload=True, with_vectors=True
            )
            for p in pts:
                payload = p.payload or {}
                vec = payload.get("values", p.vector)  # exact values; float32 if absent
                assert isinstance(vec, list)
                out.append((str(payload["vctr_name"]), tuple(float(x) for x in vec)))
            if offset is None:
                return sorted(out)

    def _count(self, coll: str) -> int:
        if self._dim(coll) is None:
            return 0
        return int(self._c.count(coll, exact=True).count)

    # -- async API ---------------------------------------------------------------------

    async def add(self, node_id: str, vectors: Sequence[Vector]) -> int:
        """Upsert ``(vctr_name, values)`` pairs; returns how many were stored (others: wrong dim)."""
        return int(await self._run(self._add, self.collection(node_id), list(vectors)))

    async def search(self, node_id: str, values: Sequence[float], k: int = 3) -> list[str]:
        """Names of the ``k`` nearest vectors (Euclidean, ties by name); ``[]`` on wrong dim."""
        return list(await self._run(self._search, self.collection(node_id), list(values), k))

    async def clear(self, node_id: str) -> bool:
        """Delete the node's collection; False if it did not exist."""
        idx = self._indexes.get(node_id)
        if idx is not None:
            idx.clear()
            idx._cleared = False  # the collection goes now; nothing left to replay
        return bool(await self._run(self._clear, self.collection(node_id)))

    async def load(self, node_id: str) -> list[Vector]:
        """Every stored vector of the node, sorted by name (values as Qdrant returns them)."""
        return list(await self._run(self._load, self.collection(node_id)))

    async def count(self, node_id: str) -> int:
        return int(await self._run(self._count, self.collection(node_id)))

    async def index(self, node_id: str) -> QdrantVectorIndex:
        """The node's :class:`QdrantVectorIndex`, loaded from Qdrant on first use."""
        idx = self._indexes.get(node_id)
        if idx is None:
            idx = QdrantVectorIndex(self, node_id, await self.load(node_id))
            idx = self._indexes.setdefault(node_id, idx)
        return idx

    async def flush(self) -> None:
        """Write pending vectors (and pending clears) of every index this store handed out."""
        for idx in list(self._indexes.values()):
            await idx.flush()


class QdrantVectorIndex:
    """The core ``VectorIndex`` of one node, backed by Qdrant.

    ``search``/``add``/``clear`` are synchronous and answered by the core's
    :class:`MemoryVectorIndex` (same arithmetic, ties by name), so a worker using Qdrant
    predicts exactly as the in-memory engine, immediately (read-your-writes).  Adds and
    clears are written to Qdrant by :meth:`flush` (the store's flush loop, or explicitly).
    The exact float64 values travel in the point payload (``values``, next to KATO's
    ``vctr_name``): Qdrant keeps float32 vectors, and a worker rebuilding the node from
    Qdrant must get the same index as the worker that learned it.
    """

    def __init__(self, store: QdrantStore, node_id: str, entries: Sequence[Vector] = ()) -> None:
        self.store = store
        self.node_id = node_id
        self._mem = MemoryVectorIndex()
        self._dim: int | None = None
        self._pending: list[Vector] = []
        self._cleared = False
        self._lock = asyncio.Lock()
        for name, values in entries:
            self._put(values, name)

    @property
    def dimension(self) -> int | None:
        return self._dim

    @property
    def pending(self) -> int:
        return len(self._pending) + int(self._cleared)

    def __len__(self) -> int:
        return len(self._mem)

    def _put(self, values: Sequence[float], name: str) -> bool:
        if self._dim is None:
            self._dim = len(values)
        elif len(values) != self._dim:
            log.info(
                "node %s: skipping %s: dimension %d != %d",
                self.node_id,
                name,
                len(values),
                self._dim,
            )
            return False
        self._mem.add(name, values)
        return True

    def add(self, name: str, values: Sequence[float]) -> None:
        """Index a vector symbol (upsert by name; a wrong dimension is skipped, as KATO)."""
        if self._put(values, name):
            self._pending.append((name, tuple(float(x) for x in values)))

    def search(self, values: Sequence[float], k: int = 3) -> list[str]:
        """Names of the ``k`` nearest vectors, ties by name; ``[]`` on a dimension mismatch."""
        return self._mem.search(values, k)

    def clear(self) -> None:
        """Forget every vector of the node (Qdrant collection deleted on the next flush)."""
        self._mem.clear()
        self._dim = None
        self._pending.clear()
        self._cleared = True

    async def flush(self) -> None:
        """Write the pending clear and adds to Qdrant; on failure they stay pending."""
        async with self._lock:
            if self._cleared:
                coll = self.store.collection(self.node_id)
                await self.store._run(self.store._clear, coll)
                self._cleared = False
            if self._pending:
                batch = list(self._pending)
                await self.store._run(self.store._add, self.store.collection(self.node_id), batch)
                del self._pending[: len(batch)]
