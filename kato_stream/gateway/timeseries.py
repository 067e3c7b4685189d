"""Sampled history behind KATO's ``/stats`` and ``/metrics/{name}``.

KATO keeps an in-process time series per metric; so does the gateway: a ring buffer of
``(timestamp, value)`` per metric name, sampled every ``interval`` seconds by a background
task (the app's lifespan) and on request (at most once a second).  CPU and memory come
from ``/proc`` (the host's, as KATO's psutil numbers); request numbers from
:class:`GatewayStats`.  History is per process and lost on restart; Prometheus
(``/metrics/prometheus``) is the durable source.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from kato_stream import metrics
from kato_stream.gateway.stats import GatewayStats
from kato_stream.service import Service

#: Every series ``/stats`` reports, in order (20, as KATO).
METRIC_NAMES: tuple[str, ...] = (
    "kato_cpu_usage_percent",
    "kato_memory_usage_percent",
    "kato_memory_usage_bytes",
    "kato_disk_usage_percent",
    "kato_load_average_1m",
    "kato_process_cpu_seconds_total",
    "kato_process_resident_memory_bytes",
    "kato_requests_total",
    "kato_errors_total",
    "kato_error_rate",
    "kato_request_duration_seconds",
    "kato_requests_per_second",
    "kato_concurrent_requests",
    "kato_active_sessions",
    "kato_sessions_created_total",
    "kato_sessions_deleted_total",
    "kato_session_operations_total",
    "kato_websocket_connections",
    "kato_prediction_cache_hits_total",
    "kato_prediction_cache_misses_total",
)


def memory_info() -> tuple[float, int]:
    """Host memory ``(percent used, bytes used)`` from /proc/meminfo (0s if unreadable)."""
    try:
        info = {}
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                k, v = line.split(":", 1)
                info[k] = int(v.split()[0]) * 1024
        used = info["MemTotal"] - info["MemAvailable"]
        return 100.0 * used / info["MemTotal"], used
    except (OSError, KeyError, ValueError, ZeroDivisionError):
        return 0.0, 0


def memory_percent() -> float:
    return memory_info()[0]


def disk_percent(path: str) -> float:
    try:
        st = os.statvfs(path if os.path.isdir(path) else ".")
        return 100.0 * (1 - st.f_bavail / st.f_blocks) if st.f_blocks else 0.0
    except OSError:
        return 0.0


def cpu_times() -> tuple[int, int] | None:
    """Host ``(busy, total)`` jiffies from the first line of /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user/nice
    return total - idle, total


def process_rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def counter_value(name: str) -> float:
    """Current value of an unlabelled counter of ``kato_stream.metrics``."""
    return metrics.REGISTRY.get_sample_value(name) or 0.0


class MetricHistory(Service):
    """Ring buffers of samples; ``sample()`` appends one point per metric, and once started
    a supervised loop samples every ``interval`` seconds."""

    def __init__(
        self,
        stats: GatewayStats,
        *,
        data_dir: str = ".",
        active_sessions: Callable[[], Awaitable[int]] | None = None,
        websocket_clients: Callable[[], int] | None = None,
        interval: float = 10.0,
        max_points: int = 720,
        min_gap: float = 1.0,
    ) -> None:
        super().__init__()
        self.stats = stats
        self.data_dir = data_dir
        self.active_sessions = active_sessions
        self.websocket_clients = websocket_clients
        self.interval = interval
        self.min_gap = min_gap
        self.series: dict[str, deque[tuple[float, float]]] = {
            n: deque(maxlen=max_points) for n in METRIC_NAMES
        }
        self.last_sample = 0.0
        self._cpu = cpu_times()
        self._requests = (stats.requests, stats.total_seconds, time.time())
        self._lock = asyncio.Lock()

    async def sample(self, *, force: bool = False) -> None:
        """One point per metric, unless the last sample is younger than ``min_gap``."""
        async with self._lock:
            now = time.time()
            if not force and now - self.last_sample < self.min_gap:
                return
            await self._sample(now)
            self.last_sample = now

    async def _sample(self, now: float) -> None:
        st = self.stats
        put = self._put
        cpu = cpu_times()
        if cpu is not None and self._cpu is not None and cpu[1] > self._cpu[1]:
            put(
                "kato_cpu_usage_percent",
                now,
                100.0 * (cpu[0] - self._cpu[0]) / (cpu[1] - self._cpu[1]),
            )
        self._cpu = cpu
        mem_pct, mem_bytes = memory_info()
        put("kato_memory_usage_percent", now, mem_pct)
        put("kato_memory_usage_bytes", now, mem_bytes)
        put("kato_disk_usage_percent", now, disk_percent(self.data_dir))
        if hasattr(os, "getloadavg"):
            put("kato_load_average_1m", now, os.getloadavg()[0])
        put("kato_process_cpu_seconds_total", now, sum(os.times()[:2]))
        put("kato_process_resident_memory_bytes", now, process_rss_bytes())
        put("kato_requests_total", now, st.requests)
        put("kato_errors_total", now, st.errors)
        put("kato_error_rate", now, st.error_rate)
        n0, s0, t0 = self._requests
        if st.requests > n0:  # mean duration of the requests since the last sample
            put("kato_request_duration_seconds", now, (st.total_seconds - s0) / (st.requests - n0))
        if now > t0:
            put("kato_requests_per_second", now, (st.requests - n0) / (now - t0))
        self._requests = (st.requests, st.total_seconds, now)
        put("kato_concurrent_requests", now, st.in_flight)
        if self.active_sessions is not None:
            # Redis down: no point rather than a wrong one
            with contextlib.suppress(Exception):
                put("kato_active_sessions", now, await self.active_sessions())
        put("kato_sessions_created_total", now, st.sessions_created)
        put("kato_sessions_deleted_total", now, st.sessions_deleted)
        put("kato_session_operations_total", now, st.session_operations)
        if self.websocket_clients is not None:
            put("kato_websocket_connections", now, self.websocket_clients())
        put(
            "kato_prediction_cache_hits_total",
            now,
            counter_value("kato_prediction_cache_hits_total"),
        )
        put(
            "kato_prediction_cache_misses_total",
            now,
            counter_value("kato_prediction_cache_misses_total"),
        )

    def _put(self, name: str, ts: float, value: float) -> None:
        self.series[name].append((ts, float(value)))

    def points(self, name: str, minutes: float) -> list[dict[str, float]]:
        """The metric's points of the last ``minutes``, oldest first; [] if unknown."""
        cutoff = time.time() - minutes * 60.0
        return [
            {"timestamp": ts, "value": v} for ts, v in self.series.get(name, ()) if ts >= cutoff
        ]

    def window(self, minutes: float) -> dict[str, list[dict[str, float]]]:
        return {name: self.points(name, minutes) for name in METRIC_NAMES}

    def latest(self, name: str) -> float | None:
        s = self.series.get(name)
        return s[-1][1] if s else None

    async def on_start(self) -> None:
        self.supervise("gateway-metric-sampler", self.run)

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.sample(force=True)
            except asyncio.CancelledError:
                raise
            except Exception:  # a sampling hiccup must not end the history
                pass
            await asyncio.sleep(self.interval)


def statistics(points: list[dict[str, float]]) -> dict[str, Any]:
    values = [p["value"] for p in points]
    return {
        "count": len(values),
        "min": min(values),
        "max": max(values),
        "avg": sum(values) / len(values),
    }
