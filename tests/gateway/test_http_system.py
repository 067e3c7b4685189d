"""Non-session endpoints: service info, health, status, metrics, pattern miss, symbols."""

from __future__ import annotations

import uuid

import httpx

from kato_stream.gateway.service import Gateway
from kato_stream.stores.kb_id import kb_id


async def test_root(http: httpx.AsyncClient) -> None:
    body = (await http.get("/")).json()
    assert body["service"] == "KATO API" and body["version"] == "3.10.1"
    assert body["session_support"] is True and body["status"] == "running"


async def test_health_reports_healthy(http: httpx.AsyncClient) -> None:
    r = await http.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["issues"] == []
    assert isinstance(body["active_sessions"], int)


async def test_status_shape(http: httpx.AsyncClient) -> None:
    body = (await http.get("/status")).json()
    assert body["status"] == "healthy" and body["sessions"]["backend"] == "redis"
    assert body["processors"]["max_processors"] == 100


async def test_metrics_json_and_prometheus(http: httpx.AsyncClient) -> None:
    await http.get("/")
    body = (await http.get("/metrics")).json()
    assert set(body) >= {"timestamp", "sessions", "performance", "resources", "databases"}
    assert body["performance"]["total_requests"] >= 1
    for path, headers in (("/metrics/prometheus", {}), ("/metrics", {"accept": "text/plain"})):
        r = await http.get(path, headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert 'kato_request_duration_seconds_count{method="GET",route="/"' in r.text


async def test_unknown_pattern_is_200_with_error_status(http: httpx.AsyncClient) -> None:
    r = await http.get("/pattern/PTRN|" + "0" * 40, params={"node_id": "gw-nopattern"})
    assert r.status_code == 200
    assert r.json() == {
        "pattern": {"status": "error", "message": f"Pattern PTRN|{'0' * 40} not found"},
        "node_id": "gw_nopattern_kato",
    }


async def test_node_selection_headers(http: httpx.AsyncClient) -> None:
    r = await http.get("/symbols/stats", headers={"x-test-id": "abc"})
    assert r.json() == {"symbols": {}, "node_id": "test_abc_kato"}
    r = await http.get("/symbols/stats", headers={"x-node-id": "n.1"})
    assert r.json()["node_id"] == "n_1_kato"
    r = await http.get("/symbols/affinity")
    assert r.json() == {"affinities": {}, "node_id": "default_node_kato"}


async def test_symbols_read_kato_keys(http: httpx.AsyncClient, gateway: Gateway) -> None:
    r = gateway.redis
    assert r is not None
    kb = "gw_symbols_kato"
    await r.delete(f"{kb}:symbols:freq", f"{kb}:symbols:pmf", f"{kb}:affinity:a")
    await r.hset(f"{kb}:symbols:freq", mapping={"a": 3, "b": 1})
    await r.hset(f"{kb}:symbols:pmf", mapping={"a": 2, "b": 1})
    await r.hset(f"{kb}:affinity:a", mapping={"joy": 1.5})
    stats = (await http.get("/symbols/stats", params={"node_id": "gw-symbols"})).json()
    assert stats["symbols"] == {
        "a": {"name": "a", "frequency": 3, "pattern_member_frequency": 2},
        "b": {"name": "b", "frequency": 1, "pattern_member_frequency": 1},
    }
    aff = (await http.get("/symbols/affinity", params={"node_id": "gw-symbols"})).json()
    assert aff["affinities"] == {"a": {"joy": 1.5}}
    one = (await http.get("/symbols/a/affinity", params={"node_id": "gw-symbols"})).json()
    assert one == {"symbol": "a", "affinity": {"joy": 1.5}, "node_id": kb}


async def test_metrics_has_every_kato_key(http: httpx.AsyncClient, gateway: Gateway) -> None:
    """KATO's /metrics: processor statistics, rates and databases, not empty placeholders."""
    node = "gw-metrics-" + uuid.uuid4().hex[:8]
    rec = await gateway.sessions.create(node)
    await gateway.sessions.get(rec.session_id)  # a session request: access_count 1
    other = "gw-metrics-sym-" + uuid.uuid4().hex[:8]
    for _ in range(2):
        assert (await http.get("/symbols/stats", params={"node_id": other})).status_code == 200
    body = (await http.get("/metrics")).json()
    assert set(body) == {
        "timestamp",
        "sessions",
        "performance",
        "resources",
        "databases",
        "rates",
        "processor_manager",
        "uptime_seconds",
        "active_sessions",
        "error",
    }
    assert isinstance(body["timestamp"], float)
    assert body["uptime_seconds"] is None and body["active_sessions"] is None
    assert body["error"] is None
    assert set(body["sessions"]) == {"total_created", "total_deleted", "active", "operations_total"}
    assert body["sessions"]["active"] >= 1
    assert set(body["performance"]) == {
        "total_requests",
        "total_errors",
        "error_rate",
        "average_response_time",
    }
    assert body["performance"]["total_requests"] == 2  # the two /symbols/stats calls
    for v in body["resources"].values():
        assert isinstance(v, int | float) and 0 <= v <= 100
    assert set(body["resources"]) == {"cpu_percent", "memory_percent", "disk_percent"}
    assert set(body["databases"]) == {"clickhouse", "qdrant", "redis"}
    for db in body["databases"].values():
        assert set(db) == {"operations", "errors", "avg_response_time"}
    rates = body["rates"]
    assert set(rates) == {
        "requests_per_second",
        "requests_per_minute",
        "errors_per_minute",
        "sessions_per_minute",
    }
    assert rates["requests_per_second"] > 0
    assert rates["requests_per_minute"] == rates["requests_per_second"] * 60
    pm = body["processor_manager"]
    assert set(pm) == {"total_processors", "max_processors", "eviction_ttl_seconds", "processors"}
    assert pm["max_processors"] == 100
    assert pm["eviction_ttl_seconds"] == gateway.settings.session_ttl
    assert pm["total_processors"] == len(pm["processors"]) >= 2
    by_node = {p["node_id"]: p for p in pm["processors"]}
    kb = kb_id(node, gateway.settings.service_name)
    assert by_node[node]["processor_id"] == kb and by_node[node]["access_count"] == 1
    assert by_node[other]["access_count"] == 2
    assert by_node[other]["processor_id"] == kb_id(other, gateway.settings.service_name)
    for p in (by_node[node], by_node[other]):
        assert set(p) == {
            "processor_id",
            "node_id",
            "created_at",
            "last_accessed",
            "access_count",
            "idle_seconds",
        }
        assert p["created_at"] <= p["last_accessed"] and 0 <= p["idle_seconds"] < 60
    # /status lists the same processors
    status = (await http.get("/status")).json()
    assert status["processors"] == pm
    await gateway.sessions.delete(rec.session_id)


async def test_deprecated_node_reads_kato_shape(http: httpx.AsyncClient) -> None:
    cog = (await http.get("/cognition-data", params={"node_id": "gw-dep"})).json()
    assert cog == {
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
        "warning": "This endpoint is deprecated. "
        "Use /sessions/{session_id}/cognition-data for session-aware data.",
        "node_id": "gw_dep_kato",
    }
    per = (await http.get("/percept-data", params={"node_id": "gw-dep"})).json()
    assert per == {
        "percept_data": {},
        "warning": "This endpoint is deprecated. "
        "Use /sessions/{session_id}/percept-data for session-aware data.",
        "node_id": "gw_dep_kato",
    }
