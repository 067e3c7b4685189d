"""A write the broker refuses stops the worker; nothing after it is skipped.

The fault, as an operator meets it: the predictions topic was created with a
``max.message.bytes`` below the worker's ``KATO_STREAM_MAX_OUTPUT_BYTES``, so the broker
refuses a large output record.  The worker must not go on to later commands (their offsets
would be committed past the refused one and it would never be answered): it exits with
code 70.  The operator lowers ``KATO_STREAM_MAX_OUTPUT_BYTES`` below the topic's limit and
starts the worker again: every command is answered, the refused one ``truncated``, and no
command is applied twice."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.agents import FATAL_EXIT_CODE
from tests.stream.harness import (
    by_source,
    collect,
    env_record,
    expected_outputs,
    publish,
    setup_topics,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

TOPIC_LIMIT = 20_000


async def test_a_refused_output_stops_the_worker_and_nothing_is_skipped(
    stream_settings: Settings, spawn_worker
) -> None:
    s = dataclasses.replace(stream_settings, persist=True)  # lists in Redis: small state
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:  # the misconfigured topic, created before the others
        await admin.create_topics(
            [
                NewTopic(
                    s.topic("predictions"),
                    s.partitions,
                    1,
                    topic_configs={"max.message.bytes": str(TOPIC_LIMIT)},
                )
            ]
        )
    finally:
        await admin.close()
    await setup_topics(s)
    sid, node = "wf", "wf-node"
    k = sid.encode()
    # train 60 patterns sharing "x" without predictions (small outputs), then observe "x"
    # and "q1": that record (60 predictions, ~64 KB) is larger than the topic accepts
    items = [(k, env_record("configure", sid, node, {"process_predictions": False}, "c0"))]
    for i in range(60):
        items += [
            (k, env_record("observe", sid, node, {"strings": ["x", f"p{i}"]}, msg_id=f"a{i}")),
            (k, env_record("observe", sid, node, {"strings": [f"q{i}"]}, msg_id=f"b{i}")),
            (k, env_record("learn", sid, node, {}, msg_id=f"l{i}")),
        ]
    items += [
        (k, env_record("configure", sid, node, {"process_predictions": True}, "c1")),
        (k, env_record("observe", sid, node, {"strings": ["x"]}, msg_id="big1")),
        (k, env_record("observe", sid, node, {"strings": ["q1"]}, msg_id="big2")),
        (k, env_record("clear_stm", sid, node, {}, msg_id="clear")),
        (k, env_record("observe", sid, node, {"strings": ["z"]}, msg_id="after")),
    ]
    sent = await publish(s.kafka_bootstrap, s.topic("observations"), items)

    first = spawn_worker(s, "first")
    deadline = time.monotonic() + 120
    while first.alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not first.alive(), "the worker went on after the broker refused a write"
    assert first.proc is not None and first.proc.returncode == FATAL_EXIT_CODE
    assert "the worker exits and restarts from its last committed offsets" in first.log_tail(10**6)
    before = by_source(await collect(s.kafka_bootstrap, s.topic("predictions"), 1, timeout=10))
    refused = sent[-3].source  # big2 (one symbol, as big1, predicts nothing)
    assert (refused.partition, refused.offset) not in before  # the broker refused it
    # (commands after it in the same batch may have been answered: they are answered again,
    # identically, below; what matters is that no offset was committed past the refused one)

    fixed = dataclasses.replace(s, max_output_bytes=TOPIC_LIMIT - 4096)
    second = spawn_worker(fixed, "second")
    want, _, _ = expected_outputs(sent, fixed)
    # outputs the first worker sent for commands after the refused one (same batch) are
    # redelivered: count answered inputs, not records
    deadline = time.monotonic() + 150
    got: dict = {}
    while time.monotonic() < deadline and set(got) != set(want):
        got = by_source(await collect(s.kafka_bootstrap, s.topic("predictions"), 1, timeout=10))
        await asyncio.sleep(0.5)
    assert set(got) == set(want), second.log_tail()
    for src, payloads in got.items():
        assert set(payloads) == {want[src]}, src  # redelivered outputs are identical
    docs = {d["msg_id"]: d for d in (codecs.loads(v[0]) for v in got.values())}
    assert docs["big1"]["status"] == "ok" and docs["big1"]["stm_length"] == 1
    assert docs["big2"]["status"] == "truncated" and docs["big2"]["stm_length"] == 2
    assert docs["after"]["status"] == "ok" and docs["after"]["stm_length"] == 1
    assert second.alive()
    second.stop()
