"""Bad input as a user meets it, on a real worker and broker: records near the broker's size
limit, oversized symbols, republished commands and records without a key.

Each case is published as a user would, into one stream; the spec is the same for all:
every input record gets exactly one output record, nothing that could not be written is
applied, the worker never stops, and a later command of the same session sees exactly the
commands that were accepted."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.topics import validate
from tests.stream.harness import collect, env_record, publish, setup_topics

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

NODE = "bad-node"


def cmd(session: str, op: str, payload: dict[str, Any] | None = None, msg_id: str | None = None):
    return (session.encode(), env_record(op, session, NODE, payload, msg_id=msg_id))


async def test_bad_input_is_answered_once_and_loses_nothing(
    stream_settings: Settings, spawn_worker
) -> None:
    s = stream_settings
    await setup_topics(s)
    junk = b"\xfe" * 900_000  # not JSON, 900 KB: its base64 would not fit a record
    items = [
        # 1. a 900 KB non-JSON record between two observes of session v
        cmd("v", "observe", {"strings": ["v0"]}, "v0"),
        (b"v", junk),
        cmd("v", "observe", {"strings": ["v2"]}, "v2"),
        cmd("v", "get", {}, "v-get"),
        # 2. a 900 KB symbol, then a learn; 3. a 1,000,000-character symbol
        cmd("big", "observe", {"strings": ["a"]}, "b0"),
        cmd("big", "observe", {"strings": ["x" * 900_000]}, "b1"),
        cmd("big", "observe", {"strings": ["y" * 1_000_000]}, "b2"),
        cmd("big", "observe", {"strings": ["b"]}, "b3"),
        cmd("big", "learn", {}, "b4"),
        cmd("big", "get", {}, "b-get"),
        # 4. a command published twice (a producer retry), for every kind of op
        cmd("d", "observe", {"strings": ["a"]}, "d1"),
        cmd("d", "observe", {"strings": ["a"]}, "d1"),
        cmd("d", "observe", {"strings": ["b"]}, "d2"),
        cmd("d", "learn", {}, "d3"),
        cmd("d", "learn", {}, "d3"),
        cmd("d", "observe", {"strings": ["c"]}, "d4"),
        cmd("d", "clear_stm", {}, "d5"),
        cmd("d", "observe", {"strings": ["e"]}, "d6"),
        cmd("d", "clear_stm", {}, "d5"),
        cmd("d", "get", {}, "d-get"),
        # 5. records without a key break the session's order: rejected
        (None, env_record("observe", "nk", NODE, {"strings": ["a"]}, msg_id="n1")),
        (None, env_record("observe", "nk", NODE, {"strings": ["b"]}, msg_id="n2")),
        cmd("nk", "observe", {"strings": ["c"]}, "n3"),
        cmd("nk", "observe", {"strings": ["d"]}, "n4"),
        cmd("nk", "get", {}, "n-get"),
    ]
    sent = await publish(s.kafka_bootstrap, s.topic("observations"), items)
    w = spawn_worker(s)
    recs = await collect(s.kafka_bootstrap, s.topic("predictions"), len(items), timeout=150)
    assert len(recs) == len(items), w.log_tail()
    # exactly one output per input, each within the limit
    by_source = {}
    for r in recs:
        doc = codecs.loads(r.value)
        validate("prediction", doc)
        src = (doc["source"]["partition"], doc["source"]["offset"])
        assert src not in by_source, f"two outputs for {src}"
        by_source[src] = doc
        assert len(r.value) + len(r.key or b"") <= s.max_output_bytes
    out = [by_source[(x.source.partition, x.source.offset)] for x in sent]

    # 1. the junk record: rejected, dead-lettered with its digest; the session continues
    assert [o["status"] for o in out[:4]] == ["ok", "rejected", "ok", "ok"]
    assert out[1]["error"]["code"] == "MALFORMED_JSON"
    assert out[2]["stm_length"] == 2
    assert out[3]["response"]["stm"] == [["v0"], ["v2"]]
    dlq = await collect(s.kafka_bootstrap, s.topic("dlq"), 1, timeout=30)
    dead = [codecs.loads(r.value) for r in dlq]
    at = (sent[1].source.partition, sent[1].source.offset)
    junk_dl = [d for d in dead if (d["source"]["partition"], d["source"]["offset"]) == at]
    assert junk_dl and junk_dl[0]["value_sha256"] == hashlib.sha256(junk).hexdigest()
    assert junk_dl[0]["value_size"] == len(junk) and junk_dl[0]["value_truncated"] is True
    assert all(len(r.value) <= s.max_output_bytes for r in dlq)

    # 2./3. the oversized symbols: rejected whole, nothing of them in the STM or the node
    big = out[4:10]
    assert [o["status"] for o in big] == ["ok", "rejected", "rejected", "ok", "ok", "ok"]
    assert {big[1]["error"]["code"], big[2]["error"]["code"]} <= {"STATE_TOO_LARGE", "OVERSIZED"}
    assert big[2]["error"]["code"] in {"STATE_TOO_LARGE", "OVERSIZED"}
    assert big[3]["stm_length"] == 2
    assert len(big[4]["learned_patterns"]) == 1
    assert big[5]["response"]["stm"] == []

    # 4. duplicates: answered "duplicate", nothing applied twice
    d = out[10:20]
    assert [o["status"] for o in d] == [
        "ok",
        "duplicate",
        "ok",
        "ok",
        "duplicate",
        "ok",
        "ok",
        "ok",
        "duplicate",
        "ok",
    ]
    assert d[1]["stm_length"] == 1 and d[4]["learned_patterns"] == []
    assert d[9]["response"]["stm"] == [["e"]]  # the repeated clear_stm did not clear "e"

    # 5. null keys: rejected, the session keeps its own order
    nk = out[20:]
    assert [o["status"] for o in nk] == ["rejected", "rejected", "ok", "ok", "ok"]
    assert nk[0]["error"]["code"] == "KEY_MISMATCH"
    assert nk[4]["response"]["stm"] == [["c"], ["d"]]
    assert w.alive(), w.log_tail()
    w.stop()
