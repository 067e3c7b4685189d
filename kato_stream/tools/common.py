"""Pieces shared by the tools: the source-record type, time parsing, rate limiting, progress."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from kato_stream.kafka import SourceRecord as SourceRecord  # the tools' record type

_SORTED = orjson.OPT_SORT_KEYS


def dumps(value: Any) -> bytes:
    """Sorted-key JSON, so that the bytes of a re-published envelope do not depend on dict order."""
    return orjson.dumps(value, option=_SORTED)


def parse_time(text: str) -> int:
    """Epoch milliseconds from ``text``: an integer (ms since epoch) or ISO-8601 (naive = UTC)."""
    s = text.strip()
    if s.lstrip("-").isdigit():
        return int(s)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use epoch milliseconds or ISO-8601)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


class RateLimiter:
    """Paces calls to ``rate`` per second on a fixed schedule: no drift, and never a burst.

    When a call comes late (a slow broker, a busy CPU), the schedule is re-anchored at now
    instead of being caught up, so consecutive calls are always at least ``1/rate`` apart and
    no one-second window ever holds more than ``rate + 1`` calls."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate if rate and rate > 0 else None
        self._start = 0.0
        self._n = 0

    async def wait(self) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        if self._n == 0:
            self._start = now
        due = self._start + self._n / self.rate
        if due > now:
            await asyncio.sleep(due - now)
        else:  # late: re-anchor so that this call is on schedule (no catching up)
            self._start = now - self._n / self.rate
        self._n += 1


def progress(total: int | None, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr (the summary goes to stdout, so pipes stay clean)."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit="msg", file=sys.stderr, disable=not enabled, dynamic_ncols=True
    )
