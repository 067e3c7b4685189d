"""A pause after an empty fetch, for brokers that do not hold fetches open.

A Kafka broker keeps a fetch that finds no records open for up to ``fetch.max.wait.ms`` and
answers as soon as a record arrives, so an idle consumer costs little and waits for nothing.
noida-db (the embedded broker) answers an empty fetch at once instead, and aiokafka's fetcher
then re-fetches in a tight loop: measured here, one idle consumer sent about 2,600 fetches/s
and burned 90 % of a core.  This module makes aiokafka's fetcher wait after such a fetch
before it sends the next one to that broker.

The pause grows while the fetches stay empty: ``seconds`` after the first, then twice as long
after each further one, up to ``max_seconds``; a fetch that brings records starts again from
``seconds``.  So a consumer in a stream of records keeps the short pause, and one that has
been idle for a while fetches about once per ``max_seconds`` (``benchmarks/bench_idle_cpu.py``).

What it costs, and what keeps it small:

* A record that arrives while a consumer sleeps waits for the rest of the pause: at most
  ``max_seconds`` after an idle spell (the first command after a pause, on the worker's input
  consumer), at most ``seconds`` in a stream of records.
* A process that produces a record keeps every fetcher of the process at ``seconds`` for
  ``HOT_SECONDS`` and ends the pause of the fetchers that read the topic it produced to, or a
  topic :func:`link`-ed to it (:func:`wake`, called by the patched ``AIOKafkaProducer.send``):
  whoever sends something usually waits for what comes back.  The worker sends a pattern
  event and its own ``kato.patterns`` followers (the LTM follower, the persister) read it
  back; the gateway sends a command and reads its answer on the output topic (linked); the
  worker's answer is usually followed by its client's next command, so a send to the output
  topic wakes its input consumer (linked).  None of those waits for ``max_seconds``.  Ending
  every pause on every send made the worker's two followers fetch ``kato.patterns`` once per
  output record as well.
* Right after a client sends a command its answer is usually a few milliseconds away, and
  a 5 ms pause then costs 2.5 ms on average.  So a client that waits for answers says
  where they come back (:func:`link` with ``replies=True``: the gateway's stream client,
  the load generator), and for ``reply_window`` seconds after each of its sends the
  fetchers of that topic with no pause of their own wait only ``reply_seconds``
  (``KATO_STREAM_REPLY_FETCH_BACKOFF_SECONDS``, 1 ms; ``KATO_STREAM_REPLY_WINDOW_SECONDS``,
  50 ms): at most ``reply_window / reply_seconds`` extra fetches per command, none while it
  sends nothing.  The worker does not: its input consumer with the short pause after every
  answer cost 0.89x the saturated rate, with no gain in paced latency
  (``benchmarks/results/stream_reply_window_worker_ab.json``).
* A broker that held the empty fetch (it took at least half the consumer's
  ``fetch_max_wait_ms``, and at least ``HELD_SECONDS``) long-polls like Kafka: no pause.
  Otherwise a consumer's ``fetch_max_wait_ms`` no longer caps the pause: it did, and the
  gateway's consumer (5 ms) then fetched 200 times a second whatever the setting.

The two aiokafka places it wraps (the per-node fetch step, the producer's send) are reached
through :mod:`kato_stream.compat`, with the rest of the library internals kato-stream uses.

``seconds = 0`` restores aiokafka's own behaviour.  The patch is process-wide (every aiokafka
consumer, Faust's included, which runs in a thread of its own) and idempotent;
:func:`set_pause` gives one consumer its own starting pause.  The worker's two consumers that
follow ``kato.patterns`` (the LTM follower and the persister) use the longer
``KATO_STREAM_TAIL_FETCH_BACKOFF_SECONDS``: a fetch costs the embedded broker more the more the
topic holds.  Every caller passes both pauses from its :class:`~kato_stream.settings.Settings`
(``idle_fetch_backoff`` and ``idle_fetch_backoff_max``, ``KATO_STREAM_IDLE_FETCH_BACKOFF_SECONDS``
and ``KATO_STREAM_IDLE_FETCH_BACKOFF_MAX_SECONDS``): this module reads no environment.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kato_stream import compat

HOT_SECONDS = 1.0  # after a send, paused fetchers of the process stay at the short pause
HELD_SECONDS = 0.05  # an empty fetch that took this long (and half its wait) was long-polled

_state: dict[str, Any] = {
    "seconds": 0.0,
    "max": 0.0,
    "reply": 0.0,  # the pause right after a send (0: the usual one)
    "reply_window": 0.0,  # for this long after a send
    "undo_fetch": None,
    "undo_send": None,
    "send": None,  # aiokafka's own send while installed (it wakes nothing)
    "woken_at": float("-inf"),
}
PAUSE_ATTR = "_kato_idle_pause"
EMPTY_ATTR = "_kato_empty_fetches"
# fetchers asleep in a pause: future -> (its event loop, the topics it reads); Faust's
# consumer has a loop of its own
_sleeping: dict[asyncio.Future[None], tuple[asyncio.AbstractEventLoop, frozenset[str]]] = {}
# sent topic -> further topics whose fetchers a send to it wakes (link())
_links: dict[str, set[str]] = {}
# sent topic -> topics its answers come back on (link(..., replies=True))
_replies: dict[str, set[str]] = {}
# answer topic -> time.monotonic() of the latest send that opened its reply window
_woken: dict[str, float] = {}


def set_pause(consumer: Any, seconds: float) -> None:
    """Give one started consumer its own starting pause (e.g. longer for a consumer that
    follows a topic's tail and can wait): the global one applies to the rest.  It grows up
    to the larger of ``seconds`` and the global ``max_seconds``."""
    if seconds < 0:
        raise ValueError(f"idle fetch backoff must be >= 0, got {seconds}")
    setattr(compat.fetcher_of(consumer), PAUSE_ATTR, float(seconds))


def pause_for(base: float, top: float, empty: int) -> float:
    """The pause after the ``empty``-th empty fetch in a row (1 = the first)."""
    if base <= 0:
        return 0.0
    return float(min(max(top, base), base * 2.0 ** min(max(0, empty - 1), 30)))


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def link(sent: str, answered: str, *, replies: bool = False) -> None:
    """A send to topic ``sent`` also ends the pauses of the fetchers of ``answered`` (a client
    that sends commands to one topic and reads their answers on another).  ``replies``: the
    sender waits for those answers, so each send also opens the reply window of
    ``answered``'s fetchers (module docstring)."""
    _links.setdefault(sent, set()).add(answered)
    if replies:
        _replies.setdefault(sent, set()).add(answered)


def wake(topic: str | None = None) -> None:
    """A record was produced to ``topic``: keep every pause short for a while, and end now
    the pauses of the fetchers that read ``topic`` or a topic linked to it (every fetcher's
    when ``topic`` is None)."""
    now = _state["woken_at"] = time.monotonic()
    for t in _replies.get(topic, ()) if topic is not None else ():
        _woken[t] = now
    if not _sleeping:
        return
    wanted = None if topic is None else {topic, *_links.get(topic, ())}
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for fut, (loop, topics) in _sleeping.copy().items():
        if wanted is not None and wanted.isdisjoint(topics):
            continue
        if loop is running:
            _resolve(fut)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(_resolve, fut)


async def _sleep(seconds: float, topics: frozenset[str] = frozenset()) -> None:
    """``asyncio.sleep`` that :func:`wake` ends early, from any thread (a wake for one of
    ``topics``, or for every topic)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    handle = loop.call_later(seconds, _resolve, fut)
    _sleeping[fut] = (loop, topics)
    try:
        await fut
    finally:
        handle.cancel()
        _sleeping.pop(fut, None)


def install_from(settings: Any) -> None:
    """:func:`install` with a :class:`~kato_stream.settings.Settings`' four pauses (what
    every process calls)."""
    install(
        settings.idle_fetch_backoff,
        settings.idle_fetch_backoff_max,
        reply_seconds=settings.reply_fetch_backoff,
        reply_window=settings.reply_window,
    )


def install(
    seconds: float, max_seconds: float, *, reply_seconds: float = 0.0, reply_window: float = 0.0
) -> None:
    """Pause after every empty fetch from now on: ``seconds`` growing to ``max_seconds``
    (never below ``seconds``); ``seconds = 0``: aiokafka's behaviour.  For ``reply_window``
    seconds after a send to a topic linked with ``replies=True``, the answer topic's
    fetchers with no pause of their own pause ``reply_seconds`` instead (0: off)."""
    if seconds < 0:
        raise ValueError(f"idle fetch backoff must be >= 0, got {seconds}")
    if max_seconds < 0:
        raise ValueError(f"idle fetch backoff maximum must be >= 0, got {max_seconds}")
    if reply_seconds < 0 or reply_window < 0:
        raise ValueError(
            f"reply fetch backoff and window must be >= 0, got {reply_seconds}, {reply_window}"
        )
    _state["seconds"] = float(seconds)
    _state["max"] = float(max(max_seconds, seconds))
    _state["reply"] = float(min(reply_seconds, seconds))  # never longer than the usual one
    _state["reply_window"] = float(reply_window)
    if _state["undo_fetch"] is not None:
        return
    _state["undo_fetch"] = compat.wrap_aiokafka_fetch_step(_paused_step)
    _state["undo_send"] = compat.wrap_aiokafka_send(_waking_send)


def _paused_step(original: compat.FetchStep) -> compat.FetchStep:
    """aiokafka's fetch step, then the pause when the fetch came back empty."""

    async def _proc_fetch_request(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        started = time.monotonic()
        has_data: bool = await original(self, assignment, node_id, request)
        if has_data:
            setattr(self, EMPTY_ATTR, 0)
            return True
        own = getattr(self, PAUSE_ATTR, None)
        base = _state["seconds"] if own is None else own
        active, topics = compat.fetch_assignment(assignment)
        if base <= 0 or not active:
            return False
        now = time.monotonic()
        if now - started >= max(HELD_SECONDS, compat.fetcher_max_wait(self) / 2):
            setattr(self, EMPTY_ATTR, 0)  # the broker held the fetch: it long-polls
            return False
        # just after this process produced, an answer may be on its way: the short pause,
        # and in the first moments the reply pause
        hot = now - _state["woken_at"] < HOT_SECONDS
        empty = 1 if hot else getattr(self, EMPTY_ATTR, 0) + 1
        setattr(self, EMPTY_ATTR, empty)
        pause = pause_for(base, _state["max"], empty)
        if own is None and _woken and _state["reply"] > 0 and _replying(topics, now):
            pause = _state["reply"]
        try:
            await _sleep(pause, topics)
        except asyncio.CancelledError:  # close() or unassignment: nothing more to do
            return False
        return False

    return _proc_fetch_request


def _replying(topics: frozenset[str], now: float) -> bool:
    """Whether a send woke one of ``topics`` less than ``reply_window`` seconds ago."""
    window = _state["reply_window"]
    return any(now - _woken.get(t, float("-inf")) < window for t in topics)


def _waking_send(send: Any) -> Any:
    """The producer's send, then :func:`wake` for the topic it sent to."""
    _state["send"] = send

    async def _send(self: Any, topic: str, *args: Any, **kwargs: Any) -> Any:
        fut = await send(self, topic, *args, **kwargs)
        wake(topic)
        return fut

    return _send


def uninstall() -> None:
    """Put aiokafka's own fetch and send back (tests)."""
    for name in ("undo_fetch", "undo_send"):
        undo = _state[name]
        if undo is not None:
            undo()
            _state[name] = None
    _state["send"] = None
    _state["seconds"] = 0.0
    _state["max"] = 0.0
    _state["reply"] = 0.0
    _state["reply_window"] = 0.0
    _state["woken_at"] = float("-inf")
    _links.clear()
    _replies.clear()
    _woken.clear()


def current() -> float:
    """The starting pause in force (0 when not installed)."""
    return float(_state["seconds"]) if _state["undo_fetch"] is not None else 0.0


def current_max() -> float:
    """The longest pause in force (0 when not installed)."""
    return float(_state["max"]) if _state["undo_fetch"] is not None else 0.0
