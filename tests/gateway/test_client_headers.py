"""The gateway picks its answers on kato.predictions by their headers (contracts.py:
kato-msg-id, kato-source, kato-status) and decodes only those: other clients' answers, about
150 KB each at KATO's defaults, pass undecoded (issue 17)."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from kato_stream.gateway.service import Gateway
from kato_stream.settings import Settings
from tests.stream.harness import env_record, publish


async def test_only_its_own_answers_are_decoded(
    http: httpx.AsyncClient, gateway: Gateway, gw_settings: Settings, worker: object
) -> None:
    node = "hdr-" + uuid.uuid4().hex[:6]
    r = await http.post("/sessions", json={"node_id": node})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    client = gateway.stream
    assert client is not None
    stop = asyncio.Event()

    async def others() -> int:  # another client's commands, answered while ours wait
        n = 0
        while not stop.is_set():
            batch = [
                (
                    f"other-{i}".encode(),
                    env_record("observe", f"other-{i}", node, {"strings": ["x"]}),
                )
                for i in range(20)
            ]
            await publish(gw_settings.kafka_bootstrap, gw_settings.topic("observations"), batch)
            n += len(batch)
            await asyncio.sleep(0.05)
        return n

    decoded0, skipped0 = client.decoded, client.skipped
    flood = asyncio.create_task(others())
    try:
        for i in range(15):
            r = await http.post(f"/sessions/{sid}/observe", json={"strings": [f"t{i}"]})
            assert r.status_code == 200, r.text
    finally:
        stop.set()
        sent = await flood
    assert sent > 0
    assert client.decoded - decoded0 == 15  # exactly its own answers
    assert client.skipped - skipped0 > 0  # the others' went by undecoded
    stm = (await http.get(f"/sessions/{sid}/stm")).json()["stm"]
    assert stm[-1] == ["t14"]
