"""End to end on the real broker: one worker subprocess, real engine.

Every valid command is answered by exactly one record equal (byte for byte) to what the
Processor and engine produce in process for the same commands; every invalid one lands in
the DLQ with its original bytes, its source and a clear error, plus a rejection record.
"""

from __future__ import annotations

import base64

import pytest

from kato_stream import contracts
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.topics import validate
from tests.stream.harness import (
    by_source,
    collect,
    env_record,
    expected_outputs,
    publish,
    setup_topics,
)

DECLARED_HEADERS = {
    getattr(contracts, name) for name in contracts.__all__ if name.endswith("_HEADER")
}

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]


def _commands() -> list[tuple[bytes | None, bytes]]:
    items: list[tuple[bytes | None, bytes]] = []
    for i in range(4):
        s, n = f"sess-{i}", f"node-{i}"
        k = s.encode()
        items.append((k, env_record("open", s, n, {"config": {"max_predictions": 5}})))
        for seq in (["hello"], ["world", "x"], ["foo"]):
            items.append(
                (k, env_record("observe", s, n, {"strings": seq, "emotives": {"joy": 0.5}}))
            )
        items.append((k, env_record("learn", s, n, {}, msg_id=f"learn-{i}")))
        items.append((k, env_record("observe", s, n, {"strings": ["hello"]})))
        items.append((k, env_record("observe", s, n, {"strings": ["world"]})))
        items.append((k, env_record("predict", s, n, {})))
        items.append(
            (
                k,
                env_record(
                    "observe_sequence",
                    s,
                    n,
                    {
                        "observations": [{"strings": ["a"]}, {"strings": ["b"]}],
                        "learn_at_end": True,
                    },
                ),
            )
        )
        items.append((k, env_record("configure", s, n, {"config": {"recall_threshold": 0.3}})))
        items.append((k, env_record("get", s, n, {})))
    return items


def _poison(valid_session: str) -> list[tuple[bytes | None, bytes, str]]:
    k = valid_session.encode()
    return [
        (k, b"{not json", "MALFORMED_JSON"),
        (k, b"[1, 2]", "NOT_AN_OBJECT"),
        (k, codecs.dumps({"op": "observe", "session_id": valid_session}), "MISSING_FIELD"),
        (
            k,
            codecs.dumps({"op": "observe", "session_id": valid_session, "node_id": 7}),
            "WRONG_TYPE",
        ),
        (
            k,
            codecs.dumps({"op": "fly", "session_id": valid_session, "node_id": "node-0"}),
            "UNKNOWN_OP",
        ),
        (
            k,
            b'{"op":"observe","session_id":"sess-0","node_id":"node-0","payload":{"strings":["'
            + b"z" * 3000
            + b'"]}}',
            "OVERSIZED",
        ),
        (
            k,
            env_record("observe", valid_session, "other-node", {"strings": ["q"]}),
            "NODE_MISMATCH",
        ),
        (
            b"someone-else",
            env_record("observe", valid_session, "node-0", {"strings": ["q"]}),
            "KEY_MISMATCH",
        ),
        (
            k,
            env_record("observe", valid_session, "node-0", {"strings": "notalist"}),
            "OBSERVATION_INVALID",
        ),
        (
            k,
            env_record("configure", valid_session, "node-0", {"config": {"recall_threshold": 7}}),
            "CONFIG_INVALID",
        ),
        (None, b"\xff\xfe garbage", "MALFORMED_JSON"),
    ]


async def test_end_to_end_with_poison(stream_settings: Settings, spawn_worker) -> None:
    import dataclasses

    s = dataclasses.replace(stream_settings, max_message_bytes=2048)
    await setup_topics(s)
    good = _commands()
    poison = _poison("sess-0")
    # interleave: poison records sit between valid commands of the same session
    items: list[tuple[bytes | None, bytes]] = good[:6] + [(k, v) for k, v, _ in poison] + good[6:]
    sent = await publish(s.kafka_bootstrap, s.topic("observations"), items)
    want, _, _ = expected_outputs(sent, s)

    w = spawn_worker(s)
    recs = await collect(s.kafka_bootstrap, s.topic("predictions"), len(items), timeout=120)
    assert len(recs) == len(items), w.log_tail()
    got = by_source(recs)
    assert set(got) == set(want)
    for src, payloads in got.items():
        assert payloads == [want[src]], src
    for r in recs:
        validate("prediction", codecs.loads(r.value))
        headers = dict(r.headers)
        assert float(headers["kato-processing-seconds"]) >= 0
        # every header the worker writes is one the contract declares (docs/contracts.md)
        assert set(headers) <= DECLARED_HEADERS, set(headers) - DECLARED_HEADERS
        doc = codecs.loads(r.value)
        assert headers[contracts.STATUS_HEADER].decode() == doc["status"]
        if doc.get("msg_id"):
            assert headers[contracts.MSG_ID_HEADER].decode() == doc["msg_id"]

    # every invalid record: in the DLQ with its bytes, source and error code
    dlq = await collect(s.kafka_bootstrap, s.topic("dlq"), len(poison), timeout=30)
    assert len(dlq) == len(poison)
    dead = [codecs.loads(r.value) for r in dlq]
    for d in dead:
        validate("dead_letter", d)
    by_value = {base64.b64decode(d["value_b64"]): d for d in dead}
    for k, v, code in poison:
        d = by_value[v]
        assert d["error"]["code"] == code, (v[:60], d["error"])
        assert d["error"]["message"]
        assert d["key_b64"] == (base64.b64encode(k).decode() if k is not None else None)
        src = next(x.source for x in sent if x.value == v)
        assert d["source"] == src.to_dict()
        rej = codecs.loads(got[(src.partition, src.offset)][0])
        assert rej["status"] == "rejected" and rej["error"]["code"] == code
    # valid commands all answered ok (the engine's own rejections are in the poison list)
    oks = [codecs.loads(p[0]) for p in got.values() if codecs.loads(p[0])["status"] == "ok"]
    assert len(oks) == len(good)
    assert w.alive()
    w.stop()
