"""Non-session endpoints: service info, health, status, metrics, pattern miss, symbols."""

from __future__ import annotations

import httpx

from kato_stream.gateway.service import Gateway


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
