"""KATO's non-session endpoints: service info, health, status, metrics, patterns, symbols;
and the gateway's own readiness and liveness probes (``/ready``, ``/live``).

Node selection (spec §8.1): query ``node_id``, else header ``x-test-id`` (prefixed with
``test_``), else ``x-node-id``, else ``default_node``; answers name the node by its kb_id.

KATO's ``processor_manager`` (``/metrics``) and ``processors`` (``/status``) list the
per-node processors of the answering worker.  kato-stream has no such objects; the
equivalent listed here is every node in use: the nodes of the active sessions in the Redis
registry (times and access counts from the session records, which every session request
refreshes) merged with the nodes this process served through node-level endpoints, which
KATO also counts (docs/gateway.md).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from kato_stream import __version__, metrics
from kato_stream.gateway.patterns import pattern_body, read_affinities, read_symbol_stats
from kato_stream.gateway.service import Gateway
from kato_stream.gateway.stats import MAX_PROCESSORS, GatewayStats, NodeAccess
from kato_stream.gateway.timeseries import disk_percent, memory_percent
from kato_stream.redact import redact_url
from kato_stream.stores.kb_id import kb_id
from kato_stream.stores.keys import ACTIVE_INDEX, SESSION_PREFIX

router = APIRouter()
KATO_VERSION = "3.10.1"


def _gw(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _stats(request: Request) -> GatewayStats:
    st: GatewayStats = request.app.state.stats
    return st


def select_node(request: Request, node_id: str | None) -> str:
    """KATO's node choice for non-session endpoints."""
    if node_id:
        return node_id
    test_id = request.headers.get("x-test-id")
    if test_id:
        return test_id if test_id.startswith("test_") else f"test_{test_id}"
    return request.headers.get("x-node-id") or "default_node"


def _kb(request: Request, node_id: str | None) -> str:
    """The selected node's kb_id; the node counts as used (KATO instantiates its processor)."""
    node = select_node(request, node_id)
    kb = kb_id(node, _gw(request).settings.service_name)
    _stats(request).touch_node(node, kb)
    return kb


@router.get("/")
async def root(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "service": "KATO API",
            "version": KATO_VERSION,
            "description": "Knowledge Abstraction for Traceable Outcomes with Multi-User Support",
            "docs": "/docs",
            "health": "/health",
            "status": "running",
            "uptime_seconds": _gw(request).uptime,
            "architecture": "modular",
            "session_support": True,
        }
    )


async def health_issues(gw: Gateway) -> list[str]:
    issues = []
    try:
        assert gw.redis is not None
        await gw.redis.ping()
    except Exception:
        issues.append("redis unreachable")
    if gw.stream is None or not gw.stream.running:
        issues.append("stream client not running")
    return issues


async def active_sessions(gw: Gateway) -> int:
    try:
        return await gw.sessions.count()
    except Exception:
        return 0


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Always 200; ``degraded`` when Redis or the stream client is down."""
    gw = _gw(request)
    issues = await health_issues(gw)
    return JSONResponse(
        {
            "status": "degraded" if issues else "healthy",
            "processor_status": "healthy",
            "service_name": gw.settings.service_name,
            "uptime_seconds": gw.uptime,
            "issues": issues,
            "metrics_collected": _stats(request).requests,
            "last_collection": gw.started_at,
            "active_sessions": await active_sessions(gw),
            "timestamp": time.time(),
        }
    )


PROBE_REDIS_TIMEOUT = 2.0
"""Longest wait for Redis's PING in ``GET /ready`` (at most the store timeout)."""


def _probe(checks: dict[str, dict[str, Any]]) -> JSONResponse:
    """200 when every check is ok, else 503; the body names each check and its state (the
    same shape as a worker's ``/ready`` and ``/live``, kato_stream/stream/probes.py)."""
    failing = [name for name, c in checks.items() if not c["ok"]]
    return JSONResponse(
        {"status": "failing" if failing else "ok", "failing": failing, "checks": checks},
        status_code=503 if failing else 200,
        headers={"Cache-Control": "no-store"},
    )


def _stream_check(gw: Gateway) -> dict[str, Any]:
    stream = gw.stream
    if stream is None:
        return {"ok": False, "state": "not started"}
    info = stream.info()
    if not info["producer_started"]:
        return {"ok": False, "state": "not connected"}
    if not info["running"]:
        return {"ok": False, "state": "reader stopped"}
    return {"ok": True, "state": "running", "partitions": info["output_partitions_assigned"]}


async def _redis_check(gw: Gateway) -> dict[str, Any]:
    if gw.redis is None:
        return {"ok": False, "state": "not started"}
    timeout = min(PROBE_REDIS_TIMEOUT, gw.settings.store_timeout)
    try:
        await asyncio.wait_for(gw.redis.ping(), timeout)
    except Exception as exc:
        return {"ok": False, "state": "unreachable", "error": type(exc).__name__}
    return {"ok": True, "state": "answering"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness (not KATO's; ``/health`` stays KATO's, always 200): 200 when the stream
    client is connected and its reader runs, the pattern follower runs and has rebuilt the
    LTM (pattern reads wait for it) and Redis answers; else 503 naming the failing checks."""
    gw = _gw(request)
    follower = gw.follower
    if follower is None:
        ltm: dict[str, Any] = {"ok": False, "state": "not started"}
    elif not follower.alive():  # its LTM no longer follows the topic
        ltm = {"ok": False, "state": "follower not running"}
    elif follower.ready.is_set():
        ltm = {"ok": True, "state": "rebuilt", "events_applied": follower.registry.applied_events}
    else:
        ltm = {"ok": False, "state": "rebuilding"}
    return _probe({"stream": _stream_check(gw), "ltm": ltm, "redis": await _redis_check(gw)})


@router.get("/live")
async def live(request: Request) -> JSONResponse:
    """Liveness: the event loop answers (this handler runs), the stream client's reader and
    the pattern follower's loop still run.  Redis is not checked: an outage of it is not
    cured by restarting the gateway."""
    gw = _gw(request)
    stream = gw.stream
    if stream is None:
        reader = {"ok": False, "state": "not started"}
    else:
        reader = {"ok": stream.running, "state": "running" if stream.running else "ended"}
    follower = gw.follower
    if follower is None:
        loop = {"ok": False, "state": "not started"}
    else:
        loop = {"ok": follower.alive(), "state": "running" if follower.alive() else "ended"}
    return _probe({"stream_reader": reader, "ltm_follower": loop})


@router.get("/status")
async def status(request: Request) -> JSONResponse:
    gw = _gw(request)
    n = await active_sessions(gw)
    return JSONResponse(
        {
            "status": "healthy",
            "base_processor_id": gw.settings.service_name,
            "uptime_seconds": gw.uptime,
            "sessions": {
                "total_sessions": n,
                "active_sessions": n,
                "expired_sessions": 0,
                "backend": "redis",
                "redis_url": redact_url(gw.settings.redis_url),
            },
            "processors": await processor_manager(gw, _stats(request)),
            "version": KATO_VERSION,
            "kato_stream_version": __version__,
        }
    )


def _wants_prometheus(accept: str | None) -> bool:
    a = (accept or "").lower()
    return ("openmetrics" in a or "text/plain" in a) and "application/json" not in a


@router.get("/metrics/prometheus")
async def metrics_prometheus(request: Request) -> Response:
    body, content_type = metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@router.get("/metrics")
async def metrics_json(request: Request) -> Response:
    """KATO's JSON shape; a Prometheus scraper (Accept text/plain or OpenMetrics) gets exposition."""
    if _wants_prometheus(request.headers.get("accept")):
        return await metrics_prometheus(request)
    gw, st = _gw(request), _stats(request)
    return JSONResponse(
        {
            "timestamp": time.time(),
            **await summary(gw, st),
            "rates": st.rates(),
            "processor_manager": await processor_manager(gw, st),
            "uptime_seconds": None,
            "active_sessions": None,
            "error": None,
        }
    )


PROCESSOR_CACHE_SECONDS = 5.0
"""KATO caches ``/metrics`` for 5 s; the node listing (a pass over the registry) likewise."""
_MGET_CHUNK = 500


def _utc(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


async def _session_nodes(gw: Gateway, now: datetime) -> dict[str, NodeAccess]:
    """Nodes of the live sessions in the registry, one entry per node."""
    out: dict[str, NodeAccess] = {}
    redis = gw.redis
    if redis is None:
        return out
    service = gw.settings.service_name
    ids = [k.decode() if isinstance(k, bytes) else k async for k in redis.sscan_iter(ACTIVE_INDEX)]
    for i in range(0, len(ids), _MGET_CHUNK):
        raws = await redis.mget([SESSION_PREFIX + sid for sid in ids[i : i + _MGET_CHUNK]])
        for raw in raws:
            if raw is None:
                continue  # expired or deleted: the index is approximate
            try:
                d = orjson.loads(raw)
                node = str(d["node_id"])
                if _utc(d["expires_at"]) <= now:
                    continue
                acc = NodeAccess(
                    node,
                    kb_id(node, service),
                    _utc(d["created_at"]),
                    _utc(d["last_accessed"]),
                    int(d.get("access_count", 0)),
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            old = out.get(node)
            out[node] = acc if old is None else old.merged(acc)
    return out


async def processor_manager(gw: Gateway, st: GatewayStats) -> dict[str, Any]:
    """KATO's processor statistics, one "processor" per node in use (module docstring).

    ``total_processors`` counts the listed nodes: the 100 (KATO's cache size) most
    recently used, least recently used first, as KATO's LRU lists them.  Nodes used only
    through node-level endpoints are forgotten after ``session_ttl`` idle seconds, as KATO
    expires idle processors.  A Redis failure leaves those in-process nodes only.
    """
    cached = st.processors_cache
    mono = time.monotonic()
    if cached is not None and mono - cached[0] < PROCESSOR_CACHE_SECONDS:
        return cached[1]
    now = datetime.now(UTC)
    ttl = gw.settings.session_ttl
    st.idle_nodes_expired(ttl, now)
    try:
        nodes = await _session_nodes(gw, now)
    except Exception:
        nodes = {}
    for node, acc in st.nodes.items():
        old = nodes.get(node)
        nodes[node] = acc if old is None else old.merged(acc)
    listed = sorted(nodes.values(), key=lambda a: (a.last_accessed, a.node_id))[-MAX_PROCESSORS:]
    body = {
        "total_processors": len(listed),
        "max_processors": MAX_PROCESSORS,
        "eviction_ttl_seconds": ttl,
        "processors": [a.to_api(now) for a in listed],
    }
    st.processors_cache = (mono, body)
    return body


async def summary(gw: Gateway, st: GatewayStats) -> dict[str, Any]:
    """``sessions``, ``performance``, ``resources``, ``databases`` of ``/metrics`` and ``/stats``."""
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return {
        "sessions": {
            "total_created": st.sessions_created,
            "total_deleted": st.sessions_deleted,
            "active": await active_sessions(gw),
            "operations_total": st.session_operations,
        },
        "performance": {
            "total_requests": st.requests,
            "total_errors": st.errors,
            "error_rate": st.error_rate,
            "average_response_time": st.average_seconds,
        },
        "resources": {
            "cpu_percent": min(100.0, 100.0 * load1 / (os.cpu_count() or 1)),
            "memory_percent": memory_percent(),
            "disk_percent": disk_percent(gw.settings.data_dir),
        },
        # KATO's collector never records store operations (always 0.0); the gateway's
        # only store is Redis and kato-stream measures its stores in Prometheus.
        "databases": {
            db: {"operations": 0, "errors": 0, "avg_response_time": 0.0}
            for db in ("clickhouse", "qdrant", "redis")
        },
    }


@router.get("/pattern/{pattern_id}")
async def get_pattern(
    pattern_id: str, request: Request, node_id: str | None = Query(None)
) -> JSONResponse:
    """200 either way, as KATO: unknown patterns give ``status: "error"``."""
    gw = _gw(request)
    kb = _kb(request, node_id)
    body = await pattern_body(gw, select_node(request, node_id), kb, pattern_id)
    if body is None:
        inner: dict[str, Any] = {"status": "error", "message": f"Pattern {pattern_id} not found"}
    else:
        inner = {"status": "okay", "pattern": body}
    return JSONResponse({"pattern": inner, "node_id": kb})


@router.get("/symbols/affinity")
async def symbols_affinity(request: Request, node_id: str | None = Query(None)) -> JSONResponse:
    kb = _kb(request, node_id)
    return JSONResponse({"affinities": await read_affinities(_gw(request), kb), "node_id": kb})


@router.get("/symbols/stats")
async def symbols_stats(request: Request, node_id: str | None = Query(None)) -> JSONResponse:
    kb = _kb(request, node_id)
    return JSONResponse({"symbols": await read_symbol_stats(_gw(request), kb), "node_id": kb})


@router.get("/symbols/{symbol}/affinity")
async def symbol_affinity(
    symbol: str, request: Request, node_id: str | None = Query(None)
) -> JSONResponse:
    kb = _kb(request, node_id)
    aff = await read_affinities(_gw(request), kb, symbol)
    return JSONResponse({"symbol": symbol, "affinity": aff.get(symbol, {}), "node_id": kb})


_DEPRECATED = (
    "This endpoint is deprecated. Use /sessions/{session_id}/{what} for session-aware data."
)


@router.get("/percept-data")
async def percept_data_deprecated(
    request: Request, node_id: str | None = Query(None)
) -> JSONResponse:
    return JSONResponse(
        {
            "percept_data": {},
            "warning": _DEPRECATED.format(session_id="{session_id}", what="percept-data"),
            "node_id": _kb(request, node_id),
        }
    )


@router.get("/cognition-data")
async def cognition_data_deprecated(
    request: Request, node_id: str | None = Query(None)
) -> JSONResponse:
    return JSONResponse(
        {
            "cognition_data": {
                "predictions": [],
                "emotives": {},
                "symbols": [],
                "command": "",
                "metadata": {},
                "path": [],
                "strings": [],
                "vectors": [],
                "short_term_memory": [],
            },
            "warning": _DEPRECATED.format(session_id="{session_id}", what="cognition-data"),
            "node_id": _kb(request, node_id),
        }
    )
