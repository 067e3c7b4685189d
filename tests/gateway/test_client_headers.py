"""The gateway picks its answers on kato.predictions by their headers (contracts.py:
kato-msg-id, kato-source, kato-status) and decodes only those: other clients' answers, about
150 KB each at KATO's defaults, pass undecoded (issue 17)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from kato_stream.gateway.client import StreamClient, StreamTimeout
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


async def test_a_failure_in_the_reader_costs_one_answer_not_the_reader(
    gw_settings: Settings, worker: object
) -> None:
    """The read loop is supervised: an error while it delivers a record (here: the first
    delivery raises) is counted and the loop starts again.  The answer it was delivering is
    lost to its request, which ends with ``StreamTimeout`` (a clear error); the next
    requests are answered."""
    client = StreamClient(
        gw_settings.kafka_bootstrap,
        gw_settings.topic("observations"),
        gw_settings.topic("predictions"),
        timeout=20,
    )
    await client.start()
    real = client._deliver
    calls = 0

    def failing_once(raw: bytes | None, headers: Any = ()) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected delivery failure")
        real(raw, headers)

    client._deliver = failing_once  # type: ignore[method-assign]
    node, sid = "sup-" + uuid.uuid4().hex[:6], "sup-" + uuid.uuid4().hex[:6]
    try:
        with pytest.raises(StreamTimeout):
            await client.request("clear_stm", sid, node, timeout=3)
        assert client.loops[0].failures == 1
        assert client.running  # the loop was started again
        for ev in (["a"], ["b"]):
            rec = await client.request("observe", sid, node, {"strings": ev})
            assert rec["status"] == "ok" and rec["stm_length"] > 0
    finally:
        await client.stop()
