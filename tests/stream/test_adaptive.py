"""The adaptive recall controller: rises under lag or slow processing, falls back, stays in bounds."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kato_stream.settings import Settings
from kato_stream.stream.adaptive import AdaptiveBounds, AdaptiveRecall

B = AdaptiveBounds(
    minimum=0.1, maximum=0.3, step=0.05, lag_high=100, lag_low=10,
    seconds_high=0.05, seconds_low=0.01, interval=1.0,
)  # fmt: skip


def run(c: AdaptiveRecall, samples: list[tuple[int, float]], start: float = 0.0) -> list[float]:
    """One sample per second of fake monotonic time; returns the level after each."""
    return [c.update(lag, sec, start + i) for i, (lag, sec) in enumerate(samples)]


def test_rest_has_no_floor() -> None:
    c = AdaptiveRecall(B)
    assert run(c, [(0, 0.001)] * 5) == [0.1] * 5
    assert c.floor is None


def test_lag_raises_to_max_then_relief_lowers_to_min() -> None:
    c = AdaptiveRecall(B)
    up = run(c, [(500, 0.001)] * 8)
    assert up == [0.15, 0.2, 0.25, 0.3, 0.3, 0.3, 0.3, 0.3]
    assert c.floor == 0.3
    down = run(c, [(0, 0.001)] * 6, start=8)
    assert down == [0.25, 0.2, 0.15, 0.1, 0.1, 0.1]
    assert c.floor is None


def test_slow_processing_alone_raises() -> None:
    c = AdaptiveRecall(B)
    assert run(c, [(0, 0.2)] * 2) == [0.15, 0.2]


def test_hysteresis_band_holds() -> None:
    c = AdaptiveRecall(B)
    run(c, [(500, 0.001)] * 2)
    # lag between low and high: neither overloaded nor relaxed
    assert run(c, [(50, 0.001)] * 5, start=2) == [0.2] * 5


def test_one_step_per_interval() -> None:
    c = AdaptiveRecall(B)
    levels = [c.update(500, 0.001, t / 10) for t in range(25)]  # 2.5 s of samples every 0.1 s
    assert levels[0] == 0.15 and levels[9] == 0.15 and levels[10] == 0.2 and levels[24] == 0.25


def test_processing_time_is_smoothed() -> None:
    c = AdaptiveRecall(B)
    run(c, [(0, 0.001)] * 20)
    # one slow command among fast ones does not raise the threshold
    assert c.update(0, 0.2, 100.0) == 0.1


@pytest.mark.parametrize(
    "kw",
    [
        {"minimum": 0.6, "maximum": 0.5},
        {"maximum": 1.5},
        {"step": 0.0},
        {"lag_low": 200, "lag_high": 100},
        {"seconds_low": 1.0, "seconds_high": 0.1},
    ],
)
def test_bad_bounds_rejected(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveBounds(**kw)  # type: ignore[arg-type]


def test_bounds_from_settings() -> None:
    s = Settings.from_env(
        {
            "KATO_STREAM_ADAPTIVE_RECALL_MIN": "0.2",
            "KATO_STREAM_ADAPTIVE_RECALL_MAX": "0.8",
            "KATO_STREAM_ADAPTIVE_RECALL_STEP": "0.1",
            "KATO_STREAM_ADAPTIVE_LAG_HIGH": "50",
            "KATO_STREAM_ADAPTIVE_LAG_LOW": "5",
            "KATO_STREAM_ADAPTIVE_SECONDS_HIGH": "0.5",
            "KATO_STREAM_ADAPTIVE_SECONDS_LOW": "0.1",
            "KATO_STREAM_ADAPTIVE_INTERVAL": "2",
        }
    )
    assert AdaptiveBounds.from_settings(s) == AdaptiveBounds(0.2, 0.8, 0.1, 50, 5, 0.5, 0.1, 2.0)


@pytest.mark.stack
@pytest.mark.timeout(240)
async def test_worker_raises_threshold_under_lag_and_lowers_it_after(
    stream_settings: Settings, spawn_worker: Any
) -> None:
    """A real worker started behind a backlog: records report the raised threshold, within
    bounds, and the threshold falls back once the backlog is gone."""
    from kato_stream.stream import codecs
    from tests.stream.harness import collect, env_record, publish, setup_topics

    s = dataclasses.replace(
        stream_settings,
        adaptive_recall=True,
        adaptive_recall_min=0.1,
        adaptive_recall_max=0.4,
        adaptive_recall_step=0.1,
        adaptive_lag_high=30,
        adaptive_lag_low=5,
        adaptive_seconds_high=10.0,  # only lag drives this test
        adaptive_seconds_low=5.0,
        adaptive_interval=0.0,
    )
    await setup_topics(s)
    sid, node = "sess", s.topic_prefix + "-node"
    k = sid.encode()
    items = []
    for i, seq in enumerate([["a", "b", "c"], ["a", "x", "y"], ["q", "r", "s"]]):
        items += [(k, env_record("observe", sid, node, {"strings": [x]})) for x in seq]
        items.append((k, env_record("learn", sid, node, {}, msg_id=f"l{i}")))
    for _ in range(50):
        items += [(k, env_record("observe", sid, node, {"strings": [x]})) for x in ("a", "b")]
        items.append((k, env_record("clear_stm", sid, node, {})))
    await publish(s.kafka_bootstrap, s.topic("observations"), items)
    w = spawn_worker(s)
    recs = await collect(s.kafka_bootstrap, s.topic("predictions"), len(items), timeout=120)
    assert len(recs) == len(items), w.log_tail()
    for i in range(3):  # backlog gone: one command at a time
        await publish(
            s.kafka_bootstrap,
            s.topic("observations"),
            [(k, env_record("observe", sid, node, {"strings": ["a"]}))],
        )
        recs = await collect(
            s.kafka_bootstrap, s.topic("predictions"), len(items) + i + 1, timeout=60
        )
    out = [codecs.loads(r.value) for r in sorted(recs, key=lambda r: r.offset)]
    thresholds = [round(r["recall_threshold"], 6) for r in out]
    assert set(thresholds) <= {0.1, 0.2, 0.3, 0.4}
    top = thresholds.index(0.4)  # reached the maximum under lag, never beyond
    assert 0.1 in thresholds[top:]  # and came back down
    assert thresholds[-3:] == [0.1, 0.1, 0.1]
    for r in out:  # predictions honour the threshold the record reports
        assert all(
            p["similarity"] >= r["recall_threshold"]
            for p in r["predictions"]
            if len(p["matches"]) > 1
        )
    w.stop()
