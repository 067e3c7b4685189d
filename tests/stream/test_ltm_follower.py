"""The pattern follower on the real broker: another worker's learns reach this process's LTM
and its ``kato_patterns_total`` gauge, a repeated learn changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kato_stream import metrics
from kato_stream.core.knowledge import LearnEvent
from kato_stream.core.naming import pattern_name
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.ltm import LtmRegistry, PatternFollower, learn_event_dict
from tests.polling import until
from tests.stream.harness import publish, setup_topics


def _learn(node: str, learn_id: str, events: list[list[str]]) -> bytes:
    ev = tuple(tuple(e) for e in events)
    return codecs.dumps(
        learn_event_dict(
            LearnEvent(node_id=node, learn_id=learn_id, name=pattern_name(ev), events=ev)
        )
    )


@dataclasses.dataclass
class Follow:
    """A follower of a fresh ``kato.patterns`` and the node it writes learns for."""

    settings: Settings
    node: str
    registry: LtmRegistry
    follower: PatternFollower

    @property
    def topic(self) -> str:
        return self.settings.topic("patterns")

    async def learn(self, *items: tuple[str, list[list[str]]]) -> None:
        """Publish learns ``(learn_id, events)`` of the node, in order."""
        key = self.node.encode()
        await publish(
            self.settings.kafka_bootstrap,
            self.topic,
            [(key, _learn(self.node, ident, events)) for ident, events in items],
        )

    async def start(self) -> None:
        await self.follower.start()
        await asyncio.wait_for(self.follower.ready.wait(), 60)

    def patterns(self) -> dict[str, Any]:
        return self.registry.node(self.node).kb.patterns


@pytest.fixture
async def follow(stack_settings: Settings) -> AsyncIterator[Follow]:
    """Topics created, a follower built (not started: the test publishes first if it
    wants a rebuild) and stopped at the end."""
    s = dataclasses.replace(stack_settings, tail_fetch_backoff=0.2)
    await setup_topics(s)
    reg = LtmRegistry()
    f = Follow(
        s,
        f"follow-{s.topic_prefix}",
        reg,
        PatternFollower(s.kafka_bootstrap, s.topic("patterns"), reg, s),
    )
    try:
        yield f
    finally:
        await f.follower.stop()


async def test_remote_learns_update_the_ltm_and_the_gauge(follow: Follow) -> None:
    await follow.learn(("a", [["x"], ["y"]]))
    await follow.start()
    assert len(follow.patterns()) == 1  # the rebuild before ready
    await follow.learn(
        ("b", [["x"], ["z"]]),
        ("b", [["x"], ["z"]]),  # redelivered: no change
        ("c", [["x"], ["y"]]),  # relearn: frequency 2
    )
    await until(lambda: follow.registry.applied_events, lambda n: n >= 3, what="3 events")
    assert sorted(r.frequency for r in follow.patterns().values()) == [1, 2]
    label = {"node": metrics.node_label(follow.node)}
    assert metrics.REGISTRY.get_sample_value("kato_patterns_total", label) == 2


async def test_sync_waits_until_the_topic_end_is_applied(follow: Follow) -> None:
    """``sync`` is the read barrier of the gateway's pattern reads: once it returns True,
    every event published before the call is in the registry (tail pause set long, so
    without the wait the reads below would find the old frequency)."""
    assert not await follow.follower.sync(1.0)  # not started: no barrier, says so
    await follow.start()
    for i in range(1, 6):
        await follow.learn((f"r{i}", [["x"], ["y"]]))
        assert await follow.follower.sync(10.0)
        assert [r.frequency for r in follow.patterns().values()] == [i]
    await follow.follower.stop()
    assert not await follow.follower.sync(1.0)  # stopped: no barrier


async def test_a_failing_fetch_is_supervised_and_replication_goes_on(follow: Follow) -> None:
    """Fault injected into the follower's loop (its consumer's fetch raises once): the
    failure is counted, the loop starts again from what it applied, and later learns still
    arrive; the follower never stops silently."""
    await follow.learn(("a", [["x"], ["y"]]))
    await follow.start()
    consumer = follow.follower._consumer  # noqa: SLF001  (the fault goes into the real consumer)
    real = consumer.getmany
    tripped = []

    async def failing(*args: object, **kwargs: object) -> object:
        if not tripped:
            tripped.append(1)
            raise ConnectionError("injected fetch failure")
        return await real(*args, **kwargs)

    label = {"task": "ltm-follower"}
    before = metrics.REGISTRY.get_sample_value("kato_task_failures_total", label) or 0.0
    consumer.getmany = failing
    await follow.learn(("b", [["x"], ["z"]]))
    await until(lambda: len(follow.patterns()), lambda n: n >= 2, what="2 patterns")
    assert tripped and len(follow.patterns()) == 2
    assert metrics.REGISTRY.get_sample_value("kato_task_failures_total", label) == before + 1
    assert follow.follower.alive()
    assert await follow.follower.sync(10)
    await follow.follower.stop()
    assert not follow.follower.alive()


async def _ticking(until: Awaitable[Any], seen: Callable[[], int]) -> tuple[list[int], float]:
    """What ``seen()`` returned at each turn a 1 ms ticker got while ``until`` ran, and the
    ticker's longest gap (seconds)."""
    values: list[int] = []
    gap = 0.0
    done = asyncio.ensure_future(until)
    last = time.monotonic()
    while not done.done():
        await asyncio.sleep(0.001)
        now = time.monotonic()
        gap, last = max(gap, now - last), now
        values.append(seen())
    await done
    return values, gap


async def test_a_rebuild_leaves_the_event_loop_responsive(follow: Follow) -> None:
    """A rebuild of many patterns yields to the event loop as it goes: the fetcher hands
    over batches of up to 2,000 records without giving the loop a turn, and folding them
    took the loop for the whole rebuild (12,000 learns: one gap of ~0.3 s here, the ticker
    saw the registry only empty and full).  Now a concurrent ticker - what the /live probe,
    the web server and heartbeats need - runs all along and sees the registry grow in
    steps."""
    n = 12_000
    await follow.learn(*((f"l{i}", [[f"a{i}"], [f"b{i}"], ["c"]]) for i in range(n)))
    reg = follow.registry
    values, gap = await _ticking(follow.start(), lambda: reg.applied_events)
    assert reg.applied_events == n and len(follow.patterns()) == n
    partial = sorted({v for v in values if 0 < v < n})
    assert len(partial) >= 3, partial  # the ticker ran during the fold, several times
    assert gap < 2.0, gap  # generous (a loaded host); ~0.03 s here
