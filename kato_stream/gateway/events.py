"""KATO's WebSocket event feed (``WS /ws/events``): session events to this process's clients.

As in KATO, events reach only the clients connected to the gateway process that handled
the request (spec §6.1 "same worker"); nothing is shared between replicas.  Each client
has a bounded queue: a client that stops reading loses events instead of holding memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

QUEUE_SIZE = 1000


def event(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """KATO's event envelope."""
    return {"event_type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data}


class EventHub:
    """Fan-out of events to every connected client's queue (one asyncio loop)."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self._queues: set[asyncio.Queue[Any]] = set()
        self._queue_size = queue_size
        self.published = 0
        self.dropped = 0

    @property
    def clients(self) -> int:
        return len(self._queues)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Any]]:
        """A queue receiving every event published while the block runs."""
        q: asyncio.Queue[Any] = asyncio.Queue(self._queue_size)
        self._queues.add(q)
        try:
            yield q
        finally:
            self._queues.discard(q)

    def publish(self, event_type: str, data: dict[str, Any]) -> None:
        """Queue the event for every client; full queues (stalled clients) drop it."""
        self.published += 1
        ev = event(event_type, data)
        for q in list(self._queues):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                self.dropped += 1
