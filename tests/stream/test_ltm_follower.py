"""The pattern follower on the real broker: another worker's learns reach this process's LTM
and its ``kato_patterns_total`` gauge, a repeated learn changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from kato_stream import metrics
from kato_stream.core.knowledge import LearnEvent
from kato_stream.core.naming import pattern_name
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.ltm import LtmRegistry, PatternFollower, learn_event_dict
from tests.stream.harness import publish, setup_topics


def _learn(node: str, learn_id: str, events: list[list[str]]) -> bytes:
    ev = tuple(tuple(e) for e in events)
    return codecs.dumps(
        learn_event_dict(
            LearnEvent(node_id=node, learn_id=learn_id, name=pattern_name(ev), events=ev)
        )
    )


async def test_remote_learns_update_the_ltm_and_the_gauge(stack_settings: Settings) -> None:
    s = stack_settings
    await setup_topics(s)
    node = f"follow-{s.topic_prefix}"
    key = node.encode()
    topic = s.topic("patterns")
    await publish(s.kafka_bootstrap, topic, [(key, _learn(node, "a", [["x"], ["y"]]))])
    reg = LtmRegistry()
    follower = PatternFollower(s.kafka_bootstrap, topic, reg, s)
    await follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), 60)
        assert len(reg.node(node).kb.patterns) == 1  # the rebuild before ready
        await publish(
            s.kafka_bootstrap,
            topic,
            [
                (key, _learn(node, "b", [["x"], ["z"]])),
                (key, _learn(node, "b", [["x"], ["z"]])),  # redelivered: no change
                (key, _learn(node, "c", [["x"], ["y"]])),  # relearn: frequency 2
            ],
        )
        label = {"node": metrics.node_label(node)}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and reg.applied_events < 3:
            await asyncio.sleep(0.1)
        kb = reg.node(node).kb
        assert sorted(r.frequency for r in kb.patterns.values()) == [1, 2]
        assert metrics.REGISTRY.get_sample_value("kato_patterns_total", label) == 2
    finally:
        await follower.stop()


async def test_sync_waits_until_the_topic_end_is_applied(stack_settings: Settings) -> None:
    """``sync`` is the read barrier of the gateway's pattern reads: once it returns True,
    every event published before the call is in the registry (tail pause set long, so
    without the wait the reads below would find the old frequency)."""
    s = dataclasses.replace(stack_settings, tail_fetch_backoff=0.2)
    await setup_topics(s)
    node = f"sync-{s.topic_prefix}"
    key = node.encode()
    topic = s.topic("patterns")
    reg = LtmRegistry()
    follower = PatternFollower(s.kafka_bootstrap, topic, reg, s)
    assert not await follower.sync(1.0)  # not started: no barrier, says so
    await follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), 60)
        for i in range(1, 6):
            await publish(s.kafka_bootstrap, topic, [(key, _learn(node, f"r{i}", [["x"], ["y"]]))])
            assert await follower.sync(10.0)
            assert [r.frequency for r in reg.node(node).kb.patterns.values()] == [i]
    finally:
        await follower.stop()
    assert not await follower.sync(1.0)  # stopped: no barrier


async def test_a_failing_fetch_is_supervised_and_replication_goes_on(
    stack_settings: Settings,
) -> None:
    """Fault injected into the follower's loop (its consumer's fetch raises once): the
    failure is counted, the loop starts again from what it applied, and later learns still
    arrive; the follower never stops silently."""
    s = stack_settings
    await setup_topics(s)
    node = f"sup-{s.topic_prefix}"
    key = node.encode()
    topic = s.topic("patterns")
    await publish(s.kafka_bootstrap, topic, [(key, _learn(node, "a", [["x"], ["y"]]))])
    reg = LtmRegistry()
    follower = PatternFollower(s.kafka_bootstrap, topic, reg, s)
    await follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), 60)
        consumer = follower._consumer  # noqa: SLF001  (the fault goes into the real consumer)
        real = consumer.getmany
        tripped = []

        async def failing(*args: object, **kwargs: object) -> object:
            if not tripped:
                tripped.append(1)
                raise ConnectionError("injected fetch failure")
            return await real(*args, **kwargs)

        before = (
            metrics.REGISTRY.get_sample_value("kato_task_failures_total", {"task": "ltm-follower"})
            or 0.0
        )
        consumer.getmany = failing
        await publish(s.kafka_bootstrap, topic, [(key, _learn(node, "b", [["x"], ["z"]]))])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(reg.node(node).kb.patterns) < 2:
            await asyncio.sleep(0.1)
        assert tripped and len(reg.node(node).kb.patterns) == 2
        after = metrics.REGISTRY.get_sample_value(
            "kato_task_failures_total", {"task": "ltm-follower"}
        )
        assert after == before + 1
        assert follower.alive()
        assert await follower.sync(10)
    finally:
        await follower.stop()
    assert not follower.alive()
