"""A pause after an empty fetch, for brokers that do not hold fetches open.

A Kafka broker keeps a fetch that finds no records open for up to ``fetch.max.wait.ms``,
so an idle consumer sends about two fetches a second.  noida-db (the embedded broker)
answers at once instead, and aiokafka's fetcher then re-fetches in a tight loop: measured
here, one idle consumer sent about 2,600 fetches/s and burned 90 % of a core, and a worker
holds three consumers (Faust's, the LTM follower's, the persister's).  This module makes
aiokafka's fetcher wait after a fetch that brought no records before it sends the next one
to that broker: ``seconds``, or the consumer's own ``fetch_max_wait_ms`` if that is shorter
(never longer than a real broker would have held the fetch).

On a real Kafka broker an empty answer already waited ``fetch.max.wait.ms``, so the pause
only delays, by at most ``seconds``, a record that arrives in it; a fetch that returns
records is never delayed.  ``seconds = 0`` restores aiokafka's own behaviour.

The patch is process-wide (every aiokafka consumer, Faust's included) and idempotent;
:func:`set_pause` gives one consumer its own pause.  The worker's two consumers that follow
``kato.patterns`` (the LTM follower and the persister) use the longer
``KATO_STREAM_TAIL_FETCH_BACKOFF_SECONDS``: they sit idle while commands stream, and a
fetch costs the embedded broker more the more the topic holds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.consumer import fetcher as _fetcher  # type: ignore[import-untyped]

_state: dict[str, Any] = {"seconds": 0.0, "original": None}
PAUSE_ATTR = "_kato_idle_pause"


def set_pause(consumer: Any, seconds: float) -> None:
    """Give one started consumer its own pause (e.g. longer for a consumer that follows a
    topic's tail and can wait): the global one applies to the rest."""
    if seconds < 0:
        raise ValueError(f"idle fetch backoff must be >= 0, got {seconds}")
    setattr(consumer._fetcher, PAUSE_ATTR, float(seconds))


def install(seconds: float) -> None:
    """Pause ``seconds`` after every empty fetch from now on (0 = aiokafka's behaviour)."""
    if seconds < 0:
        raise ValueError(f"idle fetch backoff must be >= 0, got {seconds}")
    _state["seconds"] = float(seconds)
    if _state["original"] is not None:
        return
    original = _fetcher.Fetcher._proc_fetch_request
    _state["original"] = original

    async def _proc_fetch_request(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        has_data: bool = await original(self, assignment, node_id, request)
        own = getattr(self, PAUSE_ATTR, None)
        pause = _state["seconds"] if own is None else own
        pause = min(pause, getattr(self, "_fetch_max_wait_ms", 500) / 1000.0)
        if not has_data and pause > 0 and assignment.active:
            try:
                await asyncio.sleep(pause)
            except asyncio.CancelledError:  # close() or unassignment: nothing more to do
                return False
        return has_data

    _fetcher.Fetcher._proc_fetch_request = _proc_fetch_request


def uninstall() -> None:
    """Put aiokafka's own fetch back (tests)."""
    original = _state["original"]
    if original is not None:
        _fetcher.Fetcher._proc_fetch_request = original
        _state["original"] = None
    _state["seconds"] = 0.0


def current() -> float:
    """The pause in force (0 when not installed)."""
    return float(_state["seconds"]) if _state["original"] is not None else 0.0
