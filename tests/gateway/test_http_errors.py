"""Error bodies and validation, exactly as KATO's clients see them (spec §2.1, §8.1)."""

from __future__ import annotations

import httpx
import pytest

from kato_stream.gateway.service import Gateway

MISSING = "session-00000000000000000000000000000000-1700000000000"

SESSION_ROUTES = [
    ("DELETE", ""),
    ("GET", "/config"),
    ("POST", "/config"),
    ("POST", "/extend"),
    ("POST", "/observe"),
    ("POST", "/observe-sequence"),
    ("GET", "/stm"),
    ("POST", "/learn"),
    ("POST", "/finalize-training"),
    ("POST", "/clear-stm"),
    ("POST", "/clear-all"),
    ("GET", "/predictions"),
    ("GET", "/percept-data"),
    ("GET", "/cognition-data"),
]


@pytest.mark.parametrize(("method", "suffix"), SESSION_ROUTES)
async def test_unknown_session_is_middleware_404(
    http: httpx.AsyncClient, method: str, suffix: str
) -> None:
    r = await http.request(method, f"/sessions/{MISSING}{suffix}", json={})
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "code": "SESSION_NOT_FOUND",
            "message": f"Session {MISSING} not found or expired",
            "session_id": MISSING,
        }
    }
    assert "x-session-id" not in r.headers and r.headers["x-trace-id"]


async def test_get_unknown_session_is_detail_404(http: httpx.AsyncClient) -> None:
    r = await http.get(f"/sessions/{MISSING}")
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session {MISSING} not found or expired"}


async def test_exists_unknown(http: httpx.AsyncClient) -> None:
    r = await http.get(f"/sessions/{MISSING}/exists")
    assert r.status_code == 200
    assert r.json() == {"exists": False, "expired": False, "session_id": MISSING}


async def test_exists_extend_expiry_over_http(http: httpx.AsyncClient, gateway: Gateway) -> None:
    rec = await gateway.sessions.create("n-ttl", ttl_seconds=1)
    sid = rec.session_id
    r = await http.post(f"/sessions/{sid}/extend", params={"ttl_seconds": 30})
    assert r.status_code == 200
    assert r.json() == {"status": "extended", "session_id": sid, "ttl_seconds": 30}
    assert r.headers["x-session-id"] == sid
    assert (await http.get(f"/sessions/{sid}/exists")).json() == {
        "exists": True,
        "expired": False,
        "session_id": sid,
    }
    await gateway.redis.expire(f"kato:session:{sid}", 1)  # type: ignore[union-attr]
    import asyncio

    await asyncio.sleep(1.3)
    assert (await http.get(f"/sessions/{sid}/exists")).json()["exists"] is False
    r = await http.get(f"/sessions/{sid}/stm")
    assert r.status_code == 404 and r.json()["error"]["code"] == "SESSION_NOT_FOUND"


async def test_count(http: httpx.AsyncClient, gateway: Gateway) -> None:
    n = (await http.get("/sessions/count")).json()["active_session_count"]
    await gateway.sessions.create("n-count")
    assert (await http.get("/sessions/count")).json() == {"active_session_count": n + 1}


BAD_OBSERVATIONS = [
    (
        {"strings": [1]},
        [
            {
                "type": "string_type",
                "loc": ["body", "strings", 0],
                "msg": "Input should be a valid string",
                "input": 1,
            }
        ],
    ),
    (
        {"strings": [None]},
        [
            {
                "type": "string_type",
                "loc": ["body", "strings", 0],
                "msg": "Input should be a valid string",
                "input": None,
            }
        ],
    ),
    (
        {"strings": "abc"},
        [
            {
                "type": "list_type",
                "loc": ["body", "strings"],
                "msg": "Input should be a valid list",
                "input": "abc",
            }
        ],
    ),
    (
        {"strings": None},
        [
            {
                "type": "list_type",
                "loc": ["body", "strings"],
                "msg": "Input should be a valid list",
                "input": None,
            }
        ],
    ),
    (
        {"vectors": "x"},
        [
            {
                "type": "list_type",
                "loc": ["body", "vectors"],
                "msg": "Input should be a valid list",
                "input": "x",
            }
        ],
    ),
    (
        {"emotives": "x"},
        [
            {
                "type": "dict_type",
                "loc": ["body", "emotives"],
                "msg": "Input should be a valid dictionary",
                "input": "x",
            }
        ],
    ),
    (
        {"emotives": {"joy": None}},
        [
            {
                "type": "float_type",
                "loc": ["body", "emotives", "joy"],
                "msg": "Input should be a valid number",
                "input": None,
            }
        ],
    ),
]


@pytest.mark.parametrize(("body", "errors"), BAD_OBSERVATIONS)
async def test_invalid_observation_is_fastapi_422(
    http: httpx.AsyncClient, gateway: Gateway, body: dict, errors: list
) -> None:
    sid = (await gateway.sessions.create("n-422")).session_id
    r = await http.post(f"/sessions/{sid}/observe", json=body)
    assert r.status_code == 422
    assert r.json() == {"detail": errors}


async def test_malformed_json_is_422(http: httpx.AsyncClient, gateway: Gateway) -> None:
    sid = (await gateway.sessions.create("n-422")).session_id
    r = await http.post(
        f"/sessions/{sid}/observe",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["type"] == "json_invalid" and err["loc"] == ["body", 1]


async def test_invalid_sequence_item_is_422(http: httpx.AsyncClient, gateway: Gateway) -> None:
    sid = (await gateway.sessions.create("n-422")).session_id
    r = await http.post(
        f"/sessions/{sid}/observe-sequence",
        json={"observations": [{"strings": ["a"]}, {"strings": [2]}]},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "observations", 1, "strings", 0]


async def test_create_session_needs_node_id(http: httpx.AsyncClient) -> None:
    r = await http.post("/sessions", json={"metadata": {}})
    assert r.status_code == 422
    assert r.json() == {
        "detail": [
            {
                "type": "missing",
                "loc": ["body", "node_id"],
                "msg": "Field required",
                "input": {"metadata": {}},
            }
        ]
    }
    r = await http.post("/sessions", json={"node_id": None})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "string_type"


async def test_config_body_must_be_object(http: httpx.AsyncClient, gateway: Gateway) -> None:
    sid = (await gateway.sessions.create("n-cfg")).session_id
    r = await http.post(f"/sessions/{sid}/config", json=[1, 2])
    assert r.status_code == 422


async def test_unknown_route_and_method(http: httpx.AsyncClient) -> None:
    r = await http.get("/no/such/route")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = await http.put("/sessions")
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}
