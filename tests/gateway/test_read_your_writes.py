"""KATO clients read what they wrote: when the gateway answers a command that learned, the
pattern's KATO-layout Redis keys are there (KATO writes them before it answers), through a
real gateway and worker.  The persister writes ClickHouse and Qdrant before Redis and before
its progress mark, so the mark this test also checks covers them."""

from __future__ import annotations

import json
import uuid

import httpx

from kato_stream.gateway.service import Gateway
from kato_stream.stores.kb_id import kb_id
from kato_stream.stream.persisted import mark_key


async def _session(http: httpx.AsyncClient, node: str) -> str:
    r = await http.post("/sessions", json={"node_id": node})
    assert r.status_code == 200, r.text
    return str(r.json()["session_id"])


async def test_a_learns_keys_are_readable_when_it_is_answered(
    http: httpx.AsyncClient, gateway: Gateway, worker: object
) -> None:
    node = "ryw-" + uuid.uuid4().hex[:8]
    kb = kb_id(node, gateway.settings.service_name)
    redis = gateway.redis
    assert redis is not None
    sid = await _session(http, node)
    for round_, joy in enumerate((0.5, 1.0, 0.25), start=1):
        for strings in (["a"], ["b"]):
            body = {"strings": strings, "emotives": {"joy": joy}, "metadata": {"m": f"v{round_}"}}
            assert (await http.post(f"/sessions/{sid}/observe", json=body)).status_code == 200
        r = await http.post(f"/sessions/{sid}/learn")
        assert r.status_code == 200, r.text
        name = r.json()["pattern_name"].removeprefix("PTRN|")
        # read at once, as KATO's own tests do
        freq, emo, meta = await redis.mget(
            f"{kb}:frequency:{name}", f"{kb}:emotives:{name}", f"{kb}:metadata:{name}"
        )
        assert freq is not None and int(freq) == round_, (round_, freq)
        assert json.loads(emo)[-1] == {"joy": joy}
        assert f"v{round_}" in json.loads(meta)["m"]
        aff = (await http.get("/symbols/a/affinity", params={"node_id": node})).json()
        assert aff["affinity"]["joy"] > 0
    marks = [k async for k in redis.scan_iter(mark_key(gateway.settings.app_id, "*", 0)[:-1] + "*")]
    assert marks, "the persister records how far the stores hold the pattern topic"


async def test_auto_learn_on_observe_is_readable_when_answered(
    http: httpx.AsyncClient, gateway: Gateway, worker: object
) -> None:
    node = "ryw-auto-" + uuid.uuid4().hex[:8]
    kb = kb_id(node, gateway.settings.service_name)
    sid = await _session(http, node)
    r = await http.post(f"/sessions/{sid}/config", json={"config": {"max_pattern_length": 2}})
    assert r.status_code == 200, r.text
    await http.post(f"/sessions/{sid}/observe", json={"strings": ["x"]})
    r = await http.post(f"/sessions/{sid}/observe", json={"strings": ["y"]})
    name = r.json()["auto_learned_pattern"]
    assert name, r.json()
    assert gateway.redis is not None
    assert await gateway.redis.get(f"{kb}:frequency:{name.removeprefix('PTRN|')}") is not None
