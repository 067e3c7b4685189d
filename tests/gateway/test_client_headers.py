"""The gateway picks its answers on kato.predictions by their headers (contracts.py:
kato-msg-id, kato-source, kato-status) and decodes only those: other clients' answers, about
150 KB each at KATO's defaults, pass undecoded (issue 17)."""

from __future__ import annotations

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
    decoded0, skipped0 = client.decoded, client.skipped
    for i in range(15):
        # another client's commands, published just before ours: their answers arrive while
        # ours is awaited (a bounded number: the worker is shared with later tests)
        others = [
            (
                f"other-{i}-{j}".encode(),
                env_record("observe", f"other-{i}-{j}", node, {"strings": ["x"]}),
            )
            for j in range(4)
        ]
        await publish(gw_settings.kafka_bootstrap, gw_settings.topic("observations"), others)
        r = await http.post(f"/sessions/{sid}/observe", json={"strings": [f"t{i}"]})
        assert r.status_code == 200, r.text
    assert client.decoded - decoded0 == 15  # exactly its own answers
    assert client.skipped - skipped0 > 0  # the others' went by undecoded
    stm = (await http.get(f"/sessions/{sid}/stm")).json()["stm"]
    assert stm[-1] == ["t14"]
