"""Node chains through the REST gateway: unravel a pattern down to level 0 (docs/hierarchy.md).

``forward_to`` itself needs no route of its own: it is a session config key, set with
``POST /sessions`` (``config``) or ``POST /sessions/{id}/config`` like any other.  The way
down is the stream's ``unravel`` op, sent for a throw-away session id (the op reads the
knowledge bases and writes no session state), so the answer is the worker's, from the same
LTM that learned the patterns.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from kato_stream.gateway.routes_system import _gw, select_node

__all__ = ["router"]

router = APIRouter()


@router.get("/pattern/{pattern_id}/unravel")
async def unravel_pattern(
    pattern_id: str,
    request: Request,
    node_id: str | None = Query(None, description="the pattern's node (level k)"),
    down: str = Query(
        "", description="the nodes below it, comma-separated: level k-1 first, level 0 last"
    ),
) -> JSONResponse:
    """``{"pattern", "nodes", "events"}``: the level-0 events the pattern stands for; 404 when
    a pattern along the way is unknown, 400 for a malformed chain."""
    node = select_node(request, node_id)
    nodes_down = [n.strip() for n in down.split(",") if n.strip()]
    body = await _gw(request).command(
        "unravel",
        f"unravel:{uuid.uuid4().hex}",
        node,
        {"pattern": pattern_id, "down": nodes_down},
    )
    return JSONResponse(body)
