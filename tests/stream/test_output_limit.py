"""An output record larger than the broker accepts must not stop the worker: it is published
truncated (status ``truncated``, error ``OUTPUT_TOO_LARGE``) and later commands are answered."""

from __future__ import annotations

import dataclasses

import pytest

from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.topics import validate
from tests.stream.harness import collect, env_record, publish, setup_topics

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


async def test_oversized_output_is_truncated_and_the_worker_goes_on(
    stream_settings: Settings, spawn_worker
) -> None:
    # the session's lists live in Redis (persist), so its table value stays small: only the
    # output record is too large (a state too large is rejected: test_bad_input.py)
    s = dataclasses.replace(stream_settings, max_output_bytes=4096, persist=True)
    await setup_topics(s)
    sid, node = "big", "big-node"
    items = []
    for i in range(12):  # 12 patterns sharing "x": observing "x", "y" predicts all of them
        items += [
            (sid.encode(), env_record("observe", sid, node, {"strings": ["x", f"p{i}"]})),
            (sid.encode(), env_record("observe", sid, node, {"strings": [f"q{i}"]})),
            (sid.encode(), env_record("learn", sid, node, {}, msg_id=f"l{i}")),
        ]
    items += [
        (sid.encode(), env_record("observe", sid, node, {"strings": ["x"]}, msg_id="big1")),
        (sid.encode(), env_record("observe", sid, node, {"strings": ["q1"]}, msg_id="big2")),
        (sid.encode(), env_record("clear_stm", sid, node, {}, msg_id="after")),
    ]
    await publish(s.kafka_bootstrap, s.topic("observations"), items)
    w = spawn_worker(s)
    recs = await collect(s.kafka_bootstrap, s.topic("predictions"), len(items), timeout=120)
    assert len(recs) == len(items), w.log_tail()
    docs = {d["msg_id"]: d for d in (codecs.loads(r.value) for r in recs) if d["msg_id"]}
    assert all(len(r.value) <= 4096 for r in recs)
    big = docs["big2"]
    validate("prediction", big)
    assert big["status"] == "truncated"
    assert big["error"]["code"] == "OUTPUT_TOO_LARGE"
    assert big["error"]["details"]["limit"] == 4096 and big["error"]["details"]["size"] > 4096
    assert big["predictions"] == [] and big["stm_length"] == 2  # applied: the STM grew
    assert docs["after"]["status"] == "ok" and docs["after"]["stm_length"] == 0
    assert w.alive()
    w.stop()
