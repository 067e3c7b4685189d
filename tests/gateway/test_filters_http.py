"""Issue 13: the ``minhash`` filter through the REST API and a real worker (spec §7.4)."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.usefixtures("worker")


async def _ok(r: httpx.Response) -> dict[str, object]:
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def test_minhash_pipeline_predicts_the_exact_match(http: httpx.AsyncClient) -> None:
    s = await _ok(await http.post("/sessions", json={"node_id": "gw" + uuid.uuid4().hex[:10]}))
    sid = s["session_id"]
    learned = []
    for pattern in (
        ("mh_x", "mh_y", "mh_z"),
        ("mh_x", "mh_y", "mh_different"),
        ("mh_unrelated", "mh_other", "mh_none"),
    ):
        for sym in pattern:
            await _ok(await http.post(f"/sessions/{sid}/observe", json={"strings": [sym]}))
        learned.append((await _ok(await http.post(f"/sessions/{sid}/learn")))["pattern_name"])
    cfg = {"filter_pipeline": ["minhash"], "recall_threshold": 0.1}
    await _ok(await http.post(f"/sessions/{sid}/config", json={"config": cfg}))
    await _ok(await http.post(f"/sessions/{sid}/clear-stm"))
    for sym in ("mh_x", "mh_y", "mh_z"):
        await _ok(await http.post(f"/sessions/{sid}/observe", json={"strings": [sym]}))
    body = await _ok(await http.get(f"/sessions/{sid}/predictions"))
    preds = body["predictions"]
    assert isinstance(preds, list)
    assert ["PTRN|" + p["name"] for p in preds] == [learned[0]]
    assert preds[0]["similarity"] == 1.0 and preds[0]["future"] == []
