"""Node chains as a KATO client meets them, through the real gateway and worker
(docs/hierarchy.md): ``forward_to`` set with the config endpoint, the way down with
``GET /pattern/{id}/unravel``, and the equivalence of the stream's chain with KATO-LM's
client-side loop (one request per token and level) on the same corpus."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from kato_stream.cli import consume_records
from kato_stream.core.naming import pattern_name
from kato_stream.settings import Settings
from tests.stream.harness import env_record, fold_patterns, kb_summary, publish

_TEXT = (
    "the quick brown fox jumps over the lazy dog and the quick red fox runs past the "
    "sleeping dog while the brown dog dreams of the quick fox that jumps over the lazy "
    "cat and the cat runs away from the quick brown fox into the dark forest of the night"
)
CORPUS = _TEXT.split(" ")


async def _session(http: httpx.AsyncClient, node: str, **config: Any) -> str:
    r = await http.post("/sessions", json={"node_id": node, "config": config})
    assert r.status_code == 200, r.text
    return str(r.json()["session_id"])


async def _stream_open(s: Settings, sid: str, node: str, **config: Any) -> None:
    await publish(
        s.kafka_bootstrap,
        s.topic("observations"),
        [(sid.encode(), env_record("open", sid, node, {"config": config}))],
    )


async def _kbs(s: Settings, nodes: list[str]) -> dict[str, dict[str, int]]:
    recs = await consume_records(s.kafka_bootstrap, s.topic("patterns"), timeout=10, to_end=True)
    kb = kb_summary(fold_patterns(recs))
    return {n: kb.get(n, {}) for n in nodes}


async def test_forward_to_through_the_config_endpoint_and_unravel(
    http: httpx.AsyncClient, gw_settings: Settings, worker: object
) -> None:
    a0, a1 = "h0-" + uuid.uuid4().hex[:6], "h1-" + uuid.uuid4().hex[:6]
    sid = await _session(http, a0, max_pattern_length=2)
    await _stream_open(gw_settings, f"{sid}/{a1}", a1, max_pattern_length=2)
    r = await http.post(f"/sessions/{sid}/config", json={"config": {"forward_to": a1}})
    assert r.status_code == 200, r.text
    cfg = (await http.get(f"/sessions/{sid}/config")).json()["config"]
    assert cfg["forward_to"] == a1 and cfg["max_pattern_length"] == 2
    bad = await http.post(f"/sessions/{sid}/config", json={"config": {"forward_to": ""}})
    assert bad.status_code == 400 and "forward_to" in bad.text

    names = []
    for tok in ["w", "x", "y", "z"]:
        r = await http.post(f"/sessions/{sid}/observe", json={"strings": [tok]})
        assert r.status_code == 200, r.text
        if r.json().get("auto_learned_pattern"):
            names.append(r.json()["auto_learned_pattern"])
    assert len(names) == 2
    top = "PTRN|" + pattern_name([[names[0]], [names[1]]])
    deadline = time.monotonic() + 30  # level 1 learns when the worker processes the forwards
    while True:
        r = await http.get(f"/pattern/{top}/unravel", params={"node_id": a1, "down": a0})
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert r.status_code == 200, r.text
    assert r.json() == {"pattern": top, "nodes": [a1, a0], "events": [["w"], ["x"], ["y"], ["z"]]}
    # unknown along the way: 404 naming the pattern
    r = await http.get(f"/pattern/{top}/unravel", params={"node_id": a0})
    assert r.status_code == 404 and "not known to node" in r.text


async def test_the_stream_chain_learns_what_the_client_side_loop_learns(
    http: httpx.AsyncClient, gw_settings: Settings, worker: object
) -> None:
    """KATO-LM's loop, one request per token and level, against forward_to; 3 levels."""
    tag = uuid.uuid4().hex[:6]
    loop_nodes = [f"loop{i}-{tag}" for i in range(3)]
    chain_nodes = [f"chain{i}-{tag}" for i in range(3)]
    sizes = [3, 3, 2]

    # the client-side loop over the gateway
    sids = [
        await _session(http, n, max_pattern_length=m)
        for n, m in zip(loop_nodes, sizes, strict=True)
    ]

    async def observe(level: int, symbol: str) -> None:
        r = await http.post(f"/sessions/{sids[level]}/observe", json={"strings": [symbol]})
        assert r.status_code == 200, r.text
        learned = r.json().get("auto_learned_pattern")
        if learned and level + 1 < len(sids):
            await observe(level + 1, learned)

    for tok in CORPUS:
        await observe(0, tok)

    # the same corpus through the stream's chain
    doc = f"doc-{tag}"
    s = gw_settings
    level_sids = [doc, f"{doc}/{chain_nodes[1]}", f"{doc}/{chain_nodes[1]}/{chain_nodes[2]}"]
    items = []
    for i, (sid, node, m) in enumerate(zip(level_sids, chain_nodes, sizes, strict=True)):
        config: dict[str, Any] = {"max_pattern_length": m}
        if i + 1 < len(chain_nodes):
            config["forward_to"] = chain_nodes[i + 1]
        items.append((sid.encode(), env_record("open", sid, node, {"config": config})))
    items += [
        (doc.encode(), env_record("observe", doc, chain_nodes[0], {"strings": [t]})) for t in CORPUS
    ]
    await publish(s.kafka_bootstrap, s.topic("observations"), items)

    want = await _kbs(s, loop_nodes)
    assert all(want[n] for n in loop_nodes), "the corpus must reach level 2"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = await _kbs(s, chain_nodes)
        if all(got[c] == want[w] for c, w in zip(chain_nodes, loop_nodes, strict=True)):
            break
        await asyncio.sleep(0.5)
    for c, w in zip(chain_nodes, loop_nodes, strict=True):
        assert got[c] == want[w], f"level {c} differs from {w}"
