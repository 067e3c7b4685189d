"""The adaptive recall controller: rises under lag or slow processing, falls back, stays in bounds."""

from __future__ import annotations

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
