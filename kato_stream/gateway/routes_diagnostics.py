"""KATO's monitoring and diagnostics endpoints (spec §8.2), answered about this gateway.

``/stats`` and ``/metrics/{name}`` read the sampled history (:mod:`.timeseries`);
``WS /ws/events`` streams session events of this process (:mod:`.events`).  The
diagnostics (``/concurrency``, ``/cache/*``, ``/distributed-stm/stats``,
``/connection-pools``) describe what exists here: KATO's processor pools and in-process
STM have no counterpart, so they report the stream-side equivalents instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from kato_stream.gateway.errors import detail
from kato_stream.gateway.events import EventHub, event
from kato_stream.gateway.routes_system import (
    active_sessions,
    health_issues,
    processor_manager,
    summary,
)
from kato_stream.gateway.service import Gateway
from kato_stream.gateway.stats import GatewayStats
from kato_stream.gateway.timeseries import MetricHistory, counter_value, statistics
from kato_stream.redact import redact_url
from kato_stream.stores.keys import PREDICTION_CACHE_PREFIX as PCACHE_PREFIX

router = APIRouter()

#: ``kato_stream.stream.app.SESSIONS_TABLE`` (not imported here: that module loads Faust).
SESSIONS_TABLE = "sessions"


def _gw(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _stats(request: Request) -> GatewayStats:
    st: GatewayStats = request.app.state.stats
    return st


def _history(request: Request) -> MetricHistory:
    h: MetricHistory = request.app.state.history
    return h


def _hub(app_state: Any) -> EventHub:
    hub: EventHub = app_state.events
    return hub


def _now() -> str:
    return datetime.now(UTC).isoformat()


@router.get("/stats")
async def stats(request: Request, minutes: int = Query(10)) -> JSONResponse:
    """KATO's ``/stats``: the last ``minutes`` of every sampled series plus a summary."""
    gw, st, history = _gw(request), _stats(request), _history(request)
    await history.sample()
    issues = await health_issues(gw)
    return JSONResponse(
        {
            "time_range_minutes": minutes,
            "timestamp": _now(),
            "processor_manager": await processor_manager(gw, st),
            "current_status": {
                "status": "degraded" if issues else "healthy",
                "issues": issues,
                "uptime_seconds": gw.uptime,
                "active_sessions": await active_sessions(gw),
                "concurrent_requests": st.in_flight,
                "websocket_clients": _hub(request.app.state).clients,
                "last_sample": history.last_sample,
                "sample_interval_seconds": history.interval,
            },
            "time_series": history.window(minutes),
            "summary": await summary(gw, st),
        }
    )


@router.get("/metrics/{metric_name}")
async def metric_history(
    metric_name: str, request: Request, minutes: int = Query(10)
) -> JSONResponse:
    """One series of ``/stats`` with count/min/max/avg; 404 when it has no points."""
    history = _history(request)
    await history.sample()
    points = history.points(metric_name, minutes)
    if not points:
        return detail(
            404, f"No data available for metric '{metric_name}' in the last {minutes} minutes"
        )
    return JSONResponse(
        {
            "metric_name": metric_name,
            "time_range_minutes": minutes,
            "timestamp": _now(),
            "statistics": statistics(points),
            "data_points": points,
        }
    )


@router.get("/concurrency")
async def concurrency(request: Request) -> JSONResponse:
    """In-flight HTTP requests and stream commands of this gateway process."""
    gw, st = _gw(request), _stats(request)
    pending = gw.stream.info()["pending_requests"] if gw.stream is not None else 0
    return JSONResponse(
        {
            "status": "healthy",
            "current": {
                "concurrent_requests": st.in_flight,
                "stream_requests_pending": pending,
                "websocket_clients": _hub(request.app.state).clients,
            },
            "peak": {"concurrent_requests": st.peak_in_flight},
            "limits": {
                "per_worker": None,
                "note": "the gateway sets no request limit; commands queue in the input topic",
            },
            "configuration": {
                "workers": 1,
                "mode": "in-worker" if gw.stm_info is not None else "standalone",
                "request_timeout_seconds": gw.request_timeout,
            },
            "recommendations": [],
            "timestamp": _now(),
        }
    )


@router.get("/cache/stats")
async def cache_stats(request: Request) -> JSONResponse:
    """The prediction cache's settings and this process's hit/miss counters."""
    s = _gw(request).settings
    hits = counter_value("kato_prediction_cache_hits_total")
    misses = counter_value("kato_prediction_cache_misses_total")
    total = hits + misses
    return JSONResponse(
        {
            "prediction_cache": {
                "enabled": s.prediction_cache,
                "backend": "redis",
                "key_prefix": PCACHE_PREFIX,
                "ttl_seconds": s.prediction_cache_ttl,
                "timeout_seconds": s.prediction_cache_timeout,
                "hits": hits,
                "misses": misses,
                "hit_rate": hits / total if total else 0.0,
            },
            "scope": "counters of this process; the cache is used by stream workers, "
            "so a standalone gateway counts nothing (see each worker's /metrics)",
            "timestamp": _now(),
        }
    )


@router.post("/cache/invalidate")
async def cache_invalidate() -> JSONResponse:
    """A no-op: cache keys embed the knowledge base's fingerprint, so a learn retires them."""
    return JSONResponse(
        {
            "status": "invalidated",
            "keys_deleted": 0,
            "note": "prediction cache keys embed the knowledge-base fingerprint; any change "
            "to a knowledge base makes its old entries unreachable and they expire by TTL",
        }
    )


@router.get("/distributed-stm/stats")
async def distributed_stm_stats(request: Request) -> JSONResponse:
    """Where STM lives: the workers' changelog-backed session table, partitioned by session."""
    gw = _gw(request)
    s = gw.settings
    local: dict[str, Any] | None = None
    if gw.stm_info is not None:
        try:
            local = gw.stm_info()
        except Exception as exc:  # a rebalance in progress, say
            local = {"error": str(exc)}
    return JSONResponse(
        {
            "backend": "stream-worker-table",
            "description": "STM lives in the stream workers' session table (one entry per "
            "session, a Kafka changelog behind it), partitioned by session id like the "
            "input topic; the gateway keeps none",
            "table": SESSIONS_TABLE,
            "changelog_topic": f"{s.app_id}-{SESSIONS_TABLE}-changelog",
            "input_topic": s.topic("observations"),
            "partitions": s.partitions,
            "table_store": s.table_store,
            "local_worker": local,
            "timestamp": _now(),
        }
    )


def _redis_pool(gw: Gateway) -> dict[str, Any]:
    pool = getattr(gw.redis, "connection_pool", None)
    if pool is None:
        return {"connected": False}
    return {
        "url": redact_url(gw.settings.redis_url),
        "max_connections": getattr(pool, "max_connections", None),
        "in_use": len(getattr(pool, "_in_use_connections", ())),
        "available": len(getattr(pool, "_available_connections", ())),
    }


@router.get("/connection-pools")
async def connection_pools(request: Request) -> JSONResponse:
    """The Redis pool and the Kafka stream client of this gateway."""
    gw = _gw(request)
    redis_info = _redis_pool(gw)
    try:
        assert gw.redis is not None
        redis_info["healthy"] = bool(await gw.redis.ping())
    except Exception:
        redis_info["healthy"] = False
    kafka = gw.stream.info() if gw.stream is not None else {"running": False}
    kafka["healthy"] = bool(kafka.get("running"))
    return JSONResponse(
        {
            "redis": redis_info,
            "kafka": kafka,
            "healthy": redis_info["healthy"] and kafka["healthy"],
            "timestamp": _now(),
        }
    )


@router.websocket("/ws/events")
async def ws_events(ws: WebSocket) -> None:
    """Snapshot on connect, ``ping`` -> ``pong``, then session events of this process."""
    gw: Gateway = ws.app.state.gateway
    hub = _hub(ws.app.state)
    await ws.accept()
    lock = asyncio.Lock()

    async def read() -> None:
        while True:
            text = await ws.receive_text()
            if text.strip().lower() == "ping":
                async with lock:
                    await ws.send_text("pong")

    async def write(q: asyncio.Queue[Any]) -> None:
        while True:
            ev = await q.get()
            async with lock:
                await ws.send_json(ev)

    with hub.subscribe() as q:
        snapshot = {"active_sessions": await active_sessions(gw), "system_status": "healthy"}
        await ws.send_json(event("state.snapshot", snapshot))
        tasks = [asyncio.create_task(read()), asyncio.create_task(write(q))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                    await t
