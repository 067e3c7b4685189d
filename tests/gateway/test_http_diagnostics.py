"""Monitoring and diagnostics endpoints: /stats, /metrics/{name}, WS /ws/events and the rest."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from kato_stream.embedded import free_port
from kato_stream.gateway import routes_diagnostics
from kato_stream.gateway.app import create_app
from kato_stream.gateway.events import EventHub
from kato_stream.gateway.service import Gateway
from kato_stream.gateway.stats import GatewayStats
from kato_stream.gateway.timeseries import METRIC_NAMES, MetricHistory, statistics

REQUIRED_SERIES = {
    "kato_cpu_usage_percent",
    "kato_memory_usage_percent",
    "kato_requests_total",
    "kato_request_duration_seconds",
}


async def test_stats_shape(http: httpx.AsyncClient) -> None:
    await http.get("/")
    await http.get("/health")
    r = await http.get("/stats", params={"minutes": 5})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "time_range_minutes",
        "timestamp",
        "processor_manager",
        "current_status",
        "time_series",
        "summary",
    }
    assert body["time_range_minutes"] == 5
    series = body["time_series"]
    assert set(series) >= REQUIRED_SERIES and len(series) == 20
    assert series["kato_requests_total"][-1]["value"] >= 2
    mem = series["kato_memory_usage_percent"]
    assert mem and set(mem[-1]) == {"timestamp", "value"} and 0 < mem[-1]["value"] <= 100
    assert set(body["summary"]) == {"sessions", "performance", "resources", "databases"}
    assert body["summary"]["performance"]["total_requests"] >= 2
    assert body["current_status"]["status"] == "healthy"


@pytest.mark.usefixtures("worker")
async def test_stats_lists_the_processors_as_metrics_does(http: httpx.AsyncClient) -> None:
    """KATO's ``/stats`` carries the processor manager's statistics, the section ``/metrics``
    has: KATO's monitoring tests read ``processor_manager`` from ``/stats``."""
    node = "gw-stats-pm-" + uuid.uuid4().hex[:8]
    r = await http.post("/sessions", json={"node_id": node})
    assert r.status_code == 200
    sid = r.json()["session_id"]
    assert (await http.post(f"/sessions/{sid}/observe", json={"strings": ["a"]})).status_code == 200
    pm = (await http.get("/stats")).json()["processor_manager"]
    assert set(pm) == {"total_processors", "max_processors", "eviction_ttl_seconds", "processors"}
    assert pm["max_processors"] == 100
    assert pm["total_processors"] == len(pm["processors"]) >= 1
    assert node in {p["node_id"] for p in pm["processors"]}
    assert (await http.get("/metrics")).json()["processor_manager"] == pm
    await http.delete(f"/sessions/{sid}")


async def test_metric_history_and_missing_metric(http: httpx.AsyncClient) -> None:
    await http.get("/")
    r = await http.get("/metrics/kato_memory_usage_percent")
    assert r.status_code == 200
    body = r.json()
    assert body["metric_name"] == "kato_memory_usage_percent"
    assert body["time_range_minutes"] == 10
    st, points = body["statistics"], body["data_points"]
    assert st["count"] == len(points) >= 1
    assert st["min"] <= st["avg"] <= st["max"]
    r = await http.get("/metrics/no_such_metric", params={"minutes": 3})
    assert r.status_code == 404
    assert r.json() == {
        "detail": "No data available for metric 'no_such_metric' in the last 3 minutes"
    }
    # /metrics/prometheus is still the exposition, not a metric called "prometheus"
    r = await http.get("/metrics/prometheus")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


async def test_diagnostics_endpoints(http: httpx.AsyncClient, gateway: Gateway) -> None:
    c = (await http.get("/concurrency")).json()
    assert c["status"] == "healthy"
    assert c["current"]["concurrent_requests"] >= 1  # this request
    assert c["peak"]["concurrent_requests"] >= c["current"]["concurrent_requests"]
    assert c["configuration"]["mode"] == "standalone"

    cache = (await http.get("/cache/stats")).json()["prediction_cache"]
    assert cache["enabled"] == gateway.settings.prediction_cache
    assert cache["ttl_seconds"] == gateway.settings.prediction_cache_ttl
    assert cache["hits"] >= 0 and cache["misses"] >= 0 and 0 <= cache["hit_rate"] <= 1
    inv = await http.post("/cache/invalidate")
    assert inv.status_code == 200 and inv.json()["status"] == "invalidated"

    stm = (await http.get("/distributed-stm/stats")).json()
    assert stm["backend"] == "stream-worker-table"
    assert stm["partitions"] == gateway.settings.partitions == 2
    assert stm["input_topic"] == gateway.settings.topic("observations")
    assert stm["local_worker"] is None  # a standalone gateway has no table

    pools = (await http.get("/connection-pools")).json()
    assert pools["healthy"] is True
    assert pools["redis"]["healthy"] is True and pools["redis"]["in_use"] >= 0
    kafka = pools["kafka"]
    assert kafka["running"] is True and kafka["output_partitions_assigned"] == [0, 1]
    assert kafka["input_topic"] == gateway.settings.topic("observations")


def test_sessions_table_name_matches_the_worker() -> None:
    from kato_stream.stream.app import SESSIONS_TABLE

    assert routes_diagnostics.SESSIONS_TABLE == SESSIONS_TABLE


async def test_history_ring_buffer_window_and_statistics() -> None:
    st = GatewayStats()
    h = MetricHistory(st, max_points=3, min_gap=60.0)
    await h.sample()
    await h.sample()  # within min_gap: no new point
    assert len(h.points("kato_requests_total", 1)) == 1
    for _ in range(4):
        await h.sample(force=True)
    assert len(h.series["kato_requests_total"]) == 3  # ring buffer
    old = time.time() - 600
    h.series["kato_errors_total"].appendleft((old, 7.0))
    assert all(p["value"] == 0.0 for p in h.points("kato_errors_total", 5))
    assert h.points("no_such", 5) == []
    assert set(h.window(5)) == set(METRIC_NAMES)
    assert statistics([{"timestamp": 0, "value": 1.0}, {"timestamp": 1, "value": 3.0}]) == {
        "count": 2,
        "min": 1.0,
        "max": 3.0,
        "avg": 2.0,
    }


async def test_event_hub_drops_for_stalled_clients() -> None:
    hub = EventHub(queue_size=1)
    with hub.subscribe() as q:
        assert hub.clients == 1
        hub.publish("a", {})
        hub.publish("b", {})
        assert q.qsize() == 1 and hub.dropped == 1
        assert q.get_nowait()["event_type"] == "a"
    assert hub.clients == 0


# -- WebSocket, over a real socket ---------------------------------------------------------


@contextlib.asynccontextmanager
async def _serve(gateway: Gateway) -> AsyncIterator[str]:
    """The app under uvicorn on this loop (services from the ``gateway`` fixture)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(gateway), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                assert not task.done(), "uvicorn exited"
                await asyncio.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def _recv(ws: ClientConnection) -> Any:
    raw = await asyncio.wait_for(ws.recv(), 20)
    return raw if raw == "pong" else json.loads(raw)


@pytest.mark.usefixtures("worker")
async def test_ws_snapshot_ping_and_session_events(gateway: Gateway) -> None:
    async with (
        _serve(gateway) as addr,
        httpx.AsyncClient(base_url=f"http://{addr}", timeout=60) as http,
        connect(f"ws://{addr}/ws/events", open_timeout=20, close_timeout=5) as ws,
    ):
        snap = await _recv(ws)
        assert snap["event_type"] == "state.snapshot" and "timestamp" in snap
        assert snap["data"]["system_status"] == "healthy"
        assert isinstance(snap["data"]["active_sessions"], int)

        await ws.send("ping")
        assert await _recv(ws) == "pong"

        r = await http.post("/sessions", json={"node_id": "gw-ws-events"})
        assert r.status_code == 200, r.text
        sid = r.json()["session_id"]
        created = await _recv(ws)
        assert created["event_type"] == "session.created"
        assert created["data"] == {
            "session_id": sid,
            "node_id": "gw-ws-events",
            "created_at": r.json()["created_at"],
        }

        r = await http.delete(f"/sessions/{sid}")
        assert r.status_code == 200, r.text
        destroyed = await _recv(ws)
        assert destroyed["event_type"] == "session.destroyed"
        assert destroyed["data"]["session_id"] == sid
        assert destroyed["data"]["reason"] == "explicit_delete"
        assert destroyed["data"]["destroyed_at"].endswith("Z")

        stats = (await http.get("/stats")).json()
        assert stats["current_status"]["websocket_clients"] == 1
