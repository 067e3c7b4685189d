"""Adaptive recall threshold: trade recall for speed while a worker falls behind.

A higher recall threshold prunes more candidates before the expensive per-pattern work
(``core/predictions.py`` skips every pattern whose LCS bound cannot reach it), so raising it
is the cheapest way to shed load without dropping commands.  The controller is pure (no
clock of its own, no I/O): the agent feeds it the partition lag and the processing time of
each command and reads :attr:`AdaptiveRecall.floor`.

Rules, chosen so the level cannot flap:

* *overloaded* when the lag exceeds ``lag_high`` **or** the smoothed processing time exceeds
  ``seconds_high``; *relaxed* when the lag is below ``lag_low`` **and** the smoothed time is
  below ``seconds_low``; in between (the hysteresis band) the level holds;
* the level moves one ``step`` at most every ``interval`` seconds, within ``[minimum, maximum]``;
* at rest (level == ``minimum``) there is no floor, so every session's own threshold (or the
  process default) applies unchanged; while raised the floor is the level, and the engine uses
  ``max(configured, floor)`` and reports that value in the output record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Weight of the newest processing time in the moving average (about the last 10 commands).
EWMA_ALPHA = 0.2


@dataclass(frozen=True)
class AdaptiveBounds:
    """Controller parameters (see ``Settings.adaptive_recall_*``)."""

    minimum: float = 0.1
    maximum: float = 0.5
    step: float = 0.05
    lag_high: int = 1000
    lag_low: int = 100
    seconds_high: float = 0.05
    seconds_low: float = 0.01
    interval: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.minimum <= self.maximum <= 1.0:
            raise ValueError("need 0 <= minimum <= maximum <= 1")
        if self.step <= 0:
            raise ValueError("step must be > 0")
        if self.lag_low > self.lag_high or self.seconds_low > self.seconds_high:
            raise ValueError("low bounds must not exceed high bounds")
        if self.interval < 0:
            raise ValueError("interval must be >= 0")

    @classmethod
    def from_settings(cls, s: Any) -> AdaptiveBounds:
        return cls(
            minimum=s.adaptive_recall_min,
            maximum=s.adaptive_recall_max,
            step=s.adaptive_recall_step,
            lag_high=s.adaptive_lag_high,
            lag_low=s.adaptive_lag_low,
            seconds_high=s.adaptive_seconds_high,
            seconds_low=s.adaptive_seconds_low,
            interval=s.adaptive_interval,
        )


class AdaptiveRecall:
    """Hysteresis controller for the effective recall threshold (one per worker)."""

    def __init__(self, bounds: AdaptiveBounds | None = None) -> None:
        self.bounds = bounds or AdaptiveBounds()
        self.level = self.bounds.minimum
        self.seconds: float | None = None  # smoothed processing time
        self.lag = 0
        self._last_move: float | None = None

    @property
    def floor(self) -> float | None:
        """Threshold floor to pass to the engine, or ``None`` at rest."""
        return self.level if self.level > self.bounds.minimum else None

    def update(self, lag: int, seconds: float, now: float) -> float:
        """Feed one sample (``now`` in monotonic seconds); returns the level after it."""
        b = self.bounds
        self.lag = max(0, lag)
        s = max(0.0, seconds)
        self.seconds = (
            s if self.seconds is None else EWMA_ALPHA * s + (1 - EWMA_ALPHA) * self.seconds
        )
        if self._last_move is not None and now - self._last_move < b.interval:
            return self.level
        if self.lag > b.lag_high or self.seconds > b.seconds_high:
            target = min(b.maximum, self.level + b.step)
        elif self.lag < b.lag_low and self.seconds < b.seconds_low:
            target = max(b.minimum, self.level - b.step)
        else:
            return self.level
        if target != self.level:
            # round away float drift so the level always lands on min + k*step (or a bound)
            self.level = min(b.maximum, max(b.minimum, round(target, 9)))
            self._last_move = now
        return self.level
