"""In-process request counters behind KATO's JSON ``/metrics`` (Prometheus has the real ones).

Besides the counters: a short history of them for KATO's ``rates`` (change over the last
minute, as KATO's collector computes them), and the nodes this process served through
node-level endpoints (``/pattern``, ``/symbols/*``, the deprecated reads), which KATO
counts as processors it instantiated (``processor_manager`` in ``/metrics``/``/status``).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RATE_WINDOW = 60.0
"""Seconds of history behind ``rates`` (KATO: ``get_rate(60)``)."""
_SNAPSHOT_GAP = 0.5
"""At most one counter snapshot per this many seconds (bounds the history to ~120 points)."""
MAX_PROCESSORS = 100
"""KATO's processor cache size; also the cap on the nodes listed here."""


@dataclass
class NodeAccess:
    """One node as KATO's processor manager lists a processor."""

    node_id: str
    processor_id: str
    created_at: datetime
    last_accessed: datetime
    access_count: int = 0

    def merged(self, other: NodeAccess) -> NodeAccess:
        return NodeAccess(
            self.node_id,
            self.processor_id,
            min(self.created_at, other.created_at),
            max(self.last_accessed, other.last_accessed),
            self.access_count + other.access_count,
        )

    def to_api(self, now: datetime) -> dict[str, Any]:
        return {
            "processor_id": self.processor_id,
            "node_id": self.node_id,
            "created_at": self.created_at.isoformat(),
            "last_accessed": self.last_accessed.isoformat(),
            "access_count": self.access_count,
            "idle_seconds": max(0.0, (now - self.last_accessed).total_seconds()),
        }


@dataclass
class GatewayStats:
    requests: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    sessions_created: int = 0
    sessions_deleted: int = 0
    session_operations: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    history: deque[tuple[float, int, int, int]] = field(default_factory=deque, repr=False)
    """``(monotonic time, requests, errors, sessions_created)`` snapshots, oldest first."""
    nodes: OrderedDict[str, NodeAccess] = field(default_factory=OrderedDict, repr=False)
    """Nodes served by node-level endpoints, least recently used first (at most 100)."""
    processors_cache: tuple[float, dict[str, Any]] | None = field(default=None, repr=False)
    """``(monotonic time, processor_manager body)``: KATO caches ``/metrics`` for 5 s."""

    def start(self) -> None:
        """Middleware hook: a request began (``record`` ends it)."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Middleware hook: one finished request."""
        self.in_flight = max(0, self.in_flight - 1)
        self.requests += 1
        self.total_seconds += seconds
        if status >= 500:
            self.errors += 1
        if route.startswith("/sessions"):
            self.session_operations += 1
            if status == 200 and route == "/sessions" and method == "POST":
                self.sessions_created += 1
            elif status == 200 and method == "DELETE":
                self.sessions_deleted += 1
        self._snapshot(time.monotonic())

    def _snapshot(self, now: float) -> None:
        h = self.history
        if h and now - h[-1][0] < _SNAPSHOT_GAP:
            return
        h.append((now, self.requests, self.errors, self.sessions_created))
        while len(h) > 1 and h[0][0] < now - RATE_WINDOW:
            h.popleft()

    def rates(self, now: float | None = None) -> dict[str, float]:
        """KATO's ``rates``: counter change per second over the last minute.

        As KATO's ``Metric.get_rate(60)``: from the oldest value inside the window to the
        newest (here: the counters now); 0.0 without two points in the window.
        """
        t = time.monotonic() if now is None else now
        first = next((s for s in self.history if s[0] >= t - RATE_WINDOW), None)
        if first is None or t <= first[0]:
            req = err = ses = 0.0
        else:
            dt = t - first[0]
            req = (self.requests - first[1]) / dt
            err = (self.errors - first[2]) / dt
            ses = (self.sessions_created - first[3]) / dt
        return {
            "requests_per_second": req,
            "requests_per_minute": req * 60.0,
            "errors_per_minute": err * 60.0,
            "sessions_per_minute": ses * 60.0,
        }

    def touch_node(self, node_id: str, processor_id: str, now: datetime | None = None) -> None:
        """A node-level endpoint served ``node_id`` (KATO instantiates its processor)."""
        t = now or datetime.now(UTC)
        got = self.nodes.pop(node_id, None)
        if got is None:
            got = NodeAccess(node_id, processor_id, t, t)
        got.last_accessed = t
        got.access_count += 1
        self.nodes[node_id] = got
        while len(self.nodes) > MAX_PROCESSORS:
            self.nodes.popitem(last=False)
        self.processors_cache = None

    def idle_nodes_expired(self, ttl_seconds: float, now: datetime | None = None) -> None:
        """Forget nodes idle longer than ``ttl_seconds`` (KATO's idle processor expiry)."""
        t = now or datetime.now(UTC)
        for nid in [
            n for n, a in self.nodes.items() if (t - a.last_accessed).total_seconds() > ttl_seconds
        ]:
            del self.nodes[nid]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def average_seconds(self) -> float:
        return self.total_seconds / self.requests if self.requests else 0.0
