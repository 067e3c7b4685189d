"""Read-your-writes for a learn: how a reader knows its pattern is in the stores.

A learn reaches the durable stores (KATO's Redis keys, the ClickHouse row, the Qdrant
vectors) through the persister (persist.py), a few hundred milliseconds after the learn's
answer.  KATO writes them before it answers, and KATO clients read them right away.  So:

1. the worker puts the ``kato.patterns`` coordinates of every pattern event a command
   produced into its output record's header ``kato-patterns`` (``"partition:offset,..."``;
   the payload stays deterministic);
2. the persister, after a batch is written to every store and committed, records how far
   it got in Redis: ``kato-stream:<app_id>:persisted:<patterns topic>:<partition>`` = the
   next offset to persist (all below it are written);
3. a reader that wants the guarantee waits until each mark passes each offset
   (:class:`PersistWaiter`).  The gateway does, before it answers a command that learned;
   a stream client can do the same with this class and the header.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from kato_stream.contracts import PATTERNS_HEADER
from kato_stream.stores.keys import MARK_KEY

__all__ = [
    "PATTERNS_HEADER",
    "PersistWaiter",
    "encode_marks",
    "mark_key",
    "parse_marks",
]


def mark_key(app_id: str, topic: str, partition: int) -> str:
    """Redis key holding the persister's next offset to persist of one partition."""
    return MARK_KEY.format(app=app_id, topic=topic, partition=partition)


def encode_marks(marks: Iterable[tuple[int, int]]) -> bytes:
    """The ``kato-patterns`` header value of (partition, offset) pairs."""
    return ",".join(f"{p}:{o}" for p, o in marks).encode("ascii")


def parse_marks(raw: bytes | None) -> list[tuple[int, int]]:
    """(partition, offset) pairs of a ``kato-patterns`` header (empty if absent or bad)."""
    if not raw:
        return []
    out = []
    for part in raw.decode("ascii", "replace").split(","):
        p, _, o = part.partition(":")
        if p.isdigit() and o.isdigit():
            out.append((int(p), int(o)))
    return out


class PersistWaiter:
    """Waits until the persister has written given ``kato.patterns`` offsets to every store.

    ``redis`` is a ``redis.asyncio`` client of the deployment's Redis.  Polls the marks
    (one MGET per poll, from every 2 ms up to every 20 ms): the wait is bounded by how
    fast the persister writes, not by the poll."""

    def __init__(self, redis: Any, app_id: str, topic: str) -> None:
        self.redis = redis
        self.app_id = app_id
        self.topic = topic

    async def reached(self, marks: list[tuple[int, int]]) -> bool:
        """Whether every (partition, offset) of ``marks`` is persisted now."""
        if not marks:
            return True
        keys = [mark_key(self.app_id, self.topic, p) for p, _ in marks]
        values = await self.redis.mget(keys)
        return all(v is not None and int(v) > o for v, (_, o) in zip(values, marks, strict=True))

    async def wait(self, marks: list[tuple[int, int]], timeout: float) -> bool:
        """Wait until :meth:`reached`; False if ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        pause = 0.002
        while not await self.reached(marks):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(0.02, pause * 1.5)
        return True
