"""The gateway's ``/ready`` and ``/live`` (routes_system.py); ``/health`` stays KATO's.

Through a real worker and the gateway's real services on the embedded stack: ready and live
while serving (a session's observe goes through), then each failure turned on and off on the
running gateway: the LTM not rebuilt, Redis unreachable, the pattern follower's loop ended,
the stream client's reader ended.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from kato_stream.gateway.service import Gateway
from tests.polling import until

pytestmark = pytest.mark.usefixtures("worker")


async def _probe(http: httpx.AsyncClient, path: str) -> tuple[int, dict[str, Any]]:
    r = await http.get(path)
    assert r.headers["cache-control"] == "no-store"
    return r.status_code, r.json()


async def _until(
    http: httpx.AsyncClient,
    path: str,
    status: int,
    failing: list[str] | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    """Poll ``path`` until it answers ``status`` (and names ``failing``); its body."""

    def ok(answer: tuple[int, dict[str, Any]]) -> bool:
        return answer[0] == status and failing in (None, answer[1]["failing"])

    _, body = await until(lambda: _probe(http, path), ok, timeout, what=f"{path} {status}")
    return body


async def test_ready_and_live_while_serving(http: httpx.AsyncClient, gateway: Gateway) -> None:
    body = await _until(http, "/ready", 200)
    assert body["status"] == "ok" and body["failing"] == []
    checks = body["checks"]
    assert checks["stream"] == {"ok": True, "state": "running", "partitions": [0, 1]}
    assert checks["ltm"]["state"] == "rebuilt" and checks["redis"]["state"] == "answering"
    status, live = await _probe(http, "/live")
    assert status == 200 and live["failing"] == []
    assert set(live["checks"]) == {"stream_reader", "ltm_follower"}
    # serving: a command goes through the worker
    r = await http.post("/sessions", json={"node_id": "gw" + uuid.uuid4().hex[:10]})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    r = await http.post(f"/sessions/{sid}/observe", json={"strings": ["a"]})
    assert r.status_code == 200 and r.json()["status"] == "okay", r.text


async def test_each_failure_turns_the_probes_503(http: httpx.AsyncClient, gateway: Gateway) -> None:
    await _until(http, "/ready", 200)
    follower, stream = gateway.follower, gateway.stream
    assert follower is not None and stream is not None

    # the LTM not rebuilt (as at start, before the follower reached the topic's end)
    follower.ready.clear()
    try:
        status, body = await _probe(http, "/ready")
        assert status == 503 and body["failing"] == ["ltm"]
        assert body["checks"]["ltm"] == {"ok": False, "state": "rebuilding"}
        assert (await _probe(http, "/live"))[0] == 200
    finally:
        follower.ready.set()
    assert (await _probe(http, "/ready"))[0] == 200

    # Redis unreachable: not ready, still live; /health stays 200 (KATO's: "degraded")
    redis = gateway.redis
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    gateway.redis = dead
    try:
        status, body = await _probe(http, "/ready")
        assert status == 503 and body["failing"] == ["redis"]
        assert body["checks"]["redis"]["state"] == "unreachable"
        assert (await _probe(http, "/live"))[0] == 200
        r = await http.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "degraded"
    finally:
        gateway.redis = redis
        await dead.aclose()
    assert (await _probe(http, "/ready"))[0] == 200

    # the pattern follower's supervised loop ends
    task = follower.loops[0].task
    assert task is not None
    task.cancel()
    body = await _until(http, "/live", 503, ["ltm_follower"], timeout=10)
    assert body["checks"]["ltm_follower"] == {"ok": False, "state": "ended"}
    status, body = await _probe(http, "/ready")
    assert status == 503 and body["failing"] == ["ltm"]
    assert body["checks"]["ltm"]["state"] == "follower not running"

    # the stream client's reader ends (its supervising task, as the follower's above)
    task = stream.loops[0].task
    assert task is not None
    task.cancel()
    body = await _until(http, "/live", 503, ["stream_reader", "ltm_follower"], timeout=10)
    assert body["checks"]["stream_reader"] == {"ok": False, "state": "ended"}
    status, body = await _probe(http, "/ready")
    assert status == 503 and body["failing"] == ["stream", "ltm"]
    assert body["checks"]["stream"]["state"] == "reader stopped"
    r = await http.get("/health")  # KATO's shape, always 200
    assert r.status_code == 200 and r.json()["issues"] == ["stream client not running"]
