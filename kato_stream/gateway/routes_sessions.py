"""KATO's session endpoints (spec §6.1, §8.2), each one command through the input topic.

The session middleware has already checked existence (and slid the expiry) for every route
here except create, count, info and exists, and put the registry record on
``request.state.session``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from kato_stream.gateway.client import new_msg_id
from kato_stream.gateway.errors import detail
from kato_stream.gateway.events import EventHub
from kato_stream.gateway.models import (
    MAX_TTL,
    CreateSessionRequest,
    JsonObject,
    ObservationData,
    ObserveSequenceRequest,
)
from kato_stream.gateway.responses import BulkJSONResponse
from kato_stream.gateway.service import Gateway, Reply
from kato_stream.gateway.sessions import SessionRecord, iso_z, new_session_id

router = APIRouter()


def _gw(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _publish(request: Request, event_type: str, data: dict[str, Any]) -> None:
    """Tell this process's ``/ws/events`` clients (KATO: same worker only)."""
    hub: EventHub | None = getattr(request.app.state, "events", None)
    if hub is not None:
        hub.publish(event_type, data)


def _session(request: Request) -> SessionRecord:
    rec: SessionRecord = request.state.session
    return rec


async def _run(
    request: Request, op: str, payload: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    rec = _session(request)
    return await _gw(request).command(op, rec.session_id, rec.node_id, payload, **kw)


def _session_response(
    rec: SessionRecord, config: dict[str, Any], ttl_seconds: int
) -> dict[str, Any]:
    return {
        "session_id": rec.session_id,
        "node_id": rec.node_id,
        "created_at": iso_z(datetime.fromisoformat(rec.created_at)),
        "expires_at": iso_z(rec.expires),
        "ttl_seconds": ttl_seconds,
        "metadata": rec.metadata,
        "session_config": config,
    }


def _config_of(state: dict[str, Any]) -> dict[str, Any]:
    cfg = state.get("session_config", state.get("config"))
    return cfg if isinstance(cfg, dict) else {}


@router.post("/sessions")
async def create_session(body: CreateSessionRequest, request: Request) -> JSONResponse:
    """Register the session, then open it on the stream (create-time config rules)."""
    gw = _gw(request)
    now = datetime.now(UTC)
    sid = new_session_id(now)
    rec = await gw.sessions.create(
        body.node_id, ttl_seconds=body.ttl_seconds, metadata=body.metadata, session_id=sid
    )
    payload: dict[str, Any] = {"ttl_seconds": rec.ttl_seconds, "metadata": rec.metadata}
    if body.config:
        payload["config"] = body.config
    try:
        opened = await gw.command("open", sid, body.node_id, payload)
        cfg = _config_of(opened)
        if not cfg:
            cfg = _config_of(await gw.command("get", sid, body.node_id))
    except Reply:
        await gw.sessions.delete(sid)
        raise
    out = _session_response(rec, cfg, rec.ttl_seconds)
    _publish(
        request,
        "session.created",
        {"session_id": sid, "node_id": rec.node_id, "created_at": out["created_at"]},
    )
    return JSONResponse(out)


@router.get("/sessions/count")
async def session_count(request: Request) -> JSONResponse:
    try:
        n = await _gw(request).sessions.count()
    except Exception:
        return detail(500, "Failed to get session count")
    return JSONResponse({"active_session_count": n})


@router.get("/sessions/{session_id}/exists")
async def session_exists(session_id: str, request: Request) -> JSONResponse:
    exists, expired = await _gw(request).sessions.exists(session_id)
    return JSONResponse({"exists": exists, "expired": expired, "session_id": session_id})


@router.get("/sessions/{session_id}")
async def get_session(session_id: str, request: Request) -> Response:
    gw = _gw(request)
    rec = await gw.sessions.get(session_id)
    if rec is None:
        return detail(404, f"Session {session_id} not found or expired")
    state = await gw.command("get", session_id, rec.node_id)
    remaining = rec.remaining_seconds(datetime.now(UTC))
    return JSONResponse(_session_response(rec, _config_of(state), remaining))


@router.delete("/sessions/{session_id}")
async def delete_session(session_id: str, request: Request) -> Response:
    """Close the session's stream state, then drop it from the registry."""
    gw = _gw(request)
    rec = _session(request)
    await gw.command("close", session_id, rec.node_id)
    if await gw.sessions.delete(session_id) is None:
        return detail(404, f"Session {session_id} not found")
    _publish(
        request,
        "session.destroyed",
        {
            "session_id": session_id,
            "destroyed_at": iso_z(datetime.now(UTC)),
            "reason": "explicit_delete",
        },
    )
    return JSONResponse({"status": "deleted", "session_id": session_id})


@router.post("/sessions/{session_id}/extend")
async def extend_session(
    session_id: str, request: Request, ttl_seconds: int = Query(3600, ge=1, le=MAX_TTL)
) -> Response:
    """A one-off expiry of now + ``ttl_seconds`` (1 s to ``MAX_TTL``; Redis refuses others)."""
    if not await _gw(request).sessions.extend(session_id, ttl_seconds):
        return detail(404, f"Session {session_id} not found")
    return JSONResponse(
        {"status": "extended", "session_id": session_id, "ttl_seconds": ttl_seconds}
    )


@router.get("/sessions/{session_id}/config")
async def get_config(session_id: str, request: Request) -> JSONResponse:
    state = await _run(request, "get")
    return JSONResponse({"session_id": session_id, "config": _config_of(state)})


@router.post("/sessions/{session_id}/config")
async def update_config(
    session_id: str, request: Request, body: Annotated[JsonObject, Body()]
) -> JSONResponse:
    """Body ``{"config": {...}}`` or the bare config; the engine validates (400 on error)."""
    return JSONResponse(await _run(request, "configure", body))


@router.post("/sessions/{session_id}/observe")
async def observe(session_id: str, body: ObservationData, request: Request) -> JSONResponse:
    """The response's ``unique_id`` is the ``obs-<hex>`` message id the gateway sends."""
    return JSONResponse(await _run(request, "observe", body.payload(), msg_id=new_msg_id("obs")))


@router.post("/sessions/{session_id}/observe-sequence")
async def observe_sequence(
    session_id: str, body: ObserveSequenceRequest, request: Request
) -> JSONResponse:
    payload = {
        "observations": [o.payload() for o in body.observations],
        "learn_after_each": body.learn_after_each,
        "learn_at_end": body.learn_at_end,
        "clear_stm_between": body.clear_stm_between,
    }
    return JSONResponse(await _run(request, "observe_sequence", payload, msg_id=new_msg_id("seq")))


@router.get("/sessions/{session_id}/stm")
async def get_stm(session_id: str, request: Request) -> JSONResponse:
    stm = (await _run(request, "get")).get("stm") or []
    return JSONResponse({"stm": stm, "session_id": session_id, "length": len(stm)})


@router.post("/sessions/{session_id}/learn")
async def learn(session_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _run(request, "learn", msg_id=new_msg_id("learn")))


@router.post("/sessions/{session_id}/clear-stm")
async def clear_stm(session_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _run(request, "clear_stm"))


@router.post("/sessions/{session_id}/clear-all")
async def clear_all(session_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _run(request, "clear_all"))


@router.post("/sessions/{session_id}/finalize-training")
async def finalize_training(session_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _run(request, "finalize_training"))


@router.get("/sessions/{session_id}/predictions")
async def predictions(session_id: str, request: Request) -> JSONResponse:
    """Query parameters (``unique_id``) are ignored, as in KATO."""
    return BulkJSONResponse(await _run(request, "predict"))


@router.get("/sessions/{session_id}/percept-data")
async def percept_data(session_id: str, request: Request) -> JSONResponse:
    state = await _run(request, "get")
    return JSONResponse(
        {
            "percept_data": state.get("percept_data") or {},
            "session_id": session_id,
            "node_id": _session(request).node_id,
        }
    )


@router.get("/sessions/{session_id}/cognition-data")
async def cognition_data(session_id: str, request: Request) -> JSONResponse:
    """Assembled from the session snapshot as KATO does (§8.2)."""
    state = await _run(request, "get")
    stm = state.get("stm") or []
    emotives = state.get("emotives_accumulator") or []
    data = {
        "predictions": state.get("predictions") or [],
        "emotives": emotives[-1] if emotives else {},
        "symbols": [s for event in stm for s in event],
        "command": "",
        "metadata": {},
        "path": [],
        "strings": [],
        "vectors": [],
        "short_term_memory": stm,
        "time": state.get("time", 0),
    }
    return BulkJSONResponse(
        {"cognition_data": data, "session_id": session_id, "node_id": _session(request).node_id}
    )
