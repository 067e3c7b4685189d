"""The offset-continuity guard: hole bookkeeping, and reading a missing range from the real
broker (the worker-level effect is checked by test_stream_crash.py)."""

from __future__ import annotations

import pytest
from faust.transport.consumer import Consumer

from kato_stream.stream.continuity import (
    ContinuityTracker,
    HoleFetchError,
    disable_gap_fill,
    fetch_range,
    stalled_partitions,
)
from kato_stream.topics import TopicSpec, create_topics
from tests.stream.harness import publish


def test_tracker_finds_holes_only_past_the_expected_offset() -> None:
    t = ContinuityTracker()
    assert not t.knows(0)
    assert t.hole(0, 7) is None  # unknown partition: nothing to compare with
    t.expect(0, 5)
    assert t.knows(0)
    assert t.hole(0, 5) is None
    assert t.hole(0, 3) is None  # a redelivery below the mark is not a hole
    assert t.hole(0, 9) == (5, 9)
    t.done(0, 9)
    assert t.hole(0, 10) is None
    t.done(0, 4)  # processing a redelivery never moves the mark back
    assert t.hole(0, 12) == (10, 12)
    t.expect(1, -1)  # "nothing committed" sentinel clamps to the log start
    assert t.hole(1, 2) == (0, 2)
    t.reset()
    assert not t.knows(0) and not t.knows(1)


async def test_fetch_range_returns_exactly_the_missing_records(
    kafka_bootstrap: str, unique_id: str
) -> None:
    topic = f"cont-{unique_id}"
    await create_topics(kafka_bootstrap, [TopicSpec(topic, 2, {})])
    items = [(b"k", f"v{i}".encode()) for i in range(40)]  # one key: one partition
    sent = await publish(kafka_bootstrap, topic, items)
    part = sent[0].source.partition
    assert {s.source.partition for s in sent} == {part}
    got = await fetch_range(kafka_bootstrap, topic, part, 7, 19, timeout=20)
    assert [r.offset for r in got] == list(range(7, 19))
    assert [r.value for r in got] == [f"v{i}".encode() for i in range(7, 19)]
    assert all(r.key == b"k" and r.topic == topic and r.partition == part for r in got)
    assert await fetch_range(kafka_bootstrap, topic, part, 5, 5) == []
    tail = await fetch_range(kafka_bootstrap, topic, part, 35, 40, timeout=20)
    assert [r.value for r in tail] == [b"v35", b"v36", b"v37", b"v38", b"v39"]


async def test_fetch_range_past_the_log_end_fails_clearly(
    kafka_bootstrap: str, unique_id: str
) -> None:
    topic = f"cont-end-{unique_id}"
    await create_topics(kafka_bootstrap, [TopicSpec(topic, 1, {})])
    await publish(kafka_bootstrap, topic, [(b"k", b"only")])
    with pytest.raises(HoleFetchError, match=r"offsets 0\.\.4: got 1 records"):
        await fetch_range(kafka_bootstrap, topic, 0, 0, 5, timeout=2)


async def test_gap_fill_is_disabled() -> None:
    class Probe:
        _gap: dict[object, object] = {}

    disable_gap_fill()
    disable_gap_fill()  # idempotent
    probe = Probe()
    await Consumer._add_gap(probe, object(), 3, 9)  # type: ignore[arg-type]
    assert probe._gap == {}


def test_stalled_partitions_only_when_idle_with_records_waiting() -> None:
    expected = {0: 10, 1: 5, 2: 7}
    highwater: dict[int, int | None] = {0: 10, 1: 9, 2: None}
    assert stalled_partitions(expected, highwater, idle_seconds=1.0, limit=3.0) == {}
    # partition 1 has records 5..8 waiting; 0 is caught up; 2 was never fetched
    assert stalled_partitions(expected, highwater, idle_seconds=3.0, limit=3.0) == {1: 5}
