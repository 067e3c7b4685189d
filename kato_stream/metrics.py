"""Every Prometheus metric of kato-stream, in one registry, plus small helpers to record them.

All durations are in seconds, every histogram has explicit buckets, and every label has a
bounded set of values: ``op``/``status``/``method`` are closed sets, free-form values
(``node``, ``reason``, ``route``) are capped per process and overflow into ``"_other"``.
The ``node`` label can be turned off (``KATO_STREAM_METRICS_NODE_LABEL=false``); the label
then stays, with the single value ``"_all"``, so dashboards and alerts work either way.

Usage (the stream layer)::

    from kato_stream import metrics
    with metrics.timed(metrics.OBSERVATION_DURATION) as t:
        result = engine.handle(cmd, state, kb, vectors)
    metrics.observe_command(cmd.op, "ok", t.seconds)

Exposition: ``render(accept)`` returns ``(body, content_type)``; ``asgi_app`` is an ASGI app
(mount it at ``/metrics``), ``MetricsMiddleware`` times ASGI requests by route template,
``aiohttp_handler`` serves aiohttp, ``install_faust(app)`` adds ``/metrics`` and the
consumer-lag/rebalance/recovery sampler to a Faust app, and ``install_probes`` its ``/ready``
and ``/live``. Nothing here imports Faust.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    make_asgi_app,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from kato_stream import __version__
from kato_stream.compat import faust_committed_offset

if TYPE_CHECKING:
    from kato_stream.settings import Settings

# ``*_created`` series double the series count and nothing here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The registry every kato-stream metric lives in (plus process_* and python_info).
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

#: Engine work per command: sub-millisecond to seconds.
ENGINE_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Gateway HTTP requests.
REQUEST_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: Cross-worker pattern visibility: tens of milliseconds to minutes.
VISIBILITY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

#: Closed label sets (values outside them are recorded as "unknown" / "other" / "OTHER").
OPS: frozenset[str] = frozenset(
    {
        "open", "observe", "observe_sequence", "learn", "clear_stm", "clear_all",
        "configure", "predict", "get", "finalize_training", "close",
    }
)  # fmt: skip
STATUSES: frozenset[str] = frozenset({"ok", "rejected", "error"})
METHODS: frozenset[str] = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

OVERFLOW = "_other"
ALL_NODES = "_all"

# -- metrics -------------------------------------------------------------------------------
BUILD_INFO = Info("kato_build", "kato-stream version.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

OBSERVATIONS = Counter(
    "kato_observations_total",
    "Observations applied to an STM (each one inside observe_sequence counts).",
    ["node"],
    registry=REGISTRY,
)
COMMANDS = Counter(
    "kato_commands_total",
    "Commands processed, by op and outcome (ok, rejected: invalid input, error: internal).",
    ["op", "status"],
    registry=REGISTRY,
)
REJECTIONS = Counter(
    "kato_rejections_total",
    "Rejected commands by reason (the error code of the rejection).",
    ["reason"],
    registry=REGISTRY,
)
DLQ = Counter("kato_dlq_total", "Records written to the dead-letter topic.", registry=REGISTRY)
TASK_FAILURES = Counter(
    "kato_task_failures_total",
    "Background tasks and agents that raised (each is restarted or takes the process down).",
    ["task"],
    registry=REGISTRY,
)
SESSIONS_LIVE = Gauge(
    "kato_sessions_live",
    "Sessions in the table of this worker's input partitions that have not expired (expiry.py).",
    registry=REGISTRY,
)
SESSION_TABLE_ENTRIES = Gauge(
    "kato_session_table_entries",
    "Entries in this worker's session table (live, expired not yet removed, closed), sampled at each expiry sweep.",
    registry=REGISTRY,
)
SESSION_EXPIRATIONS = Counter(
    "kato_session_expirations_total",
    "Sessions expired on the stream path: how=command (a command found it expired and started afresh) or sweep (removed: tombstone, Redis lists, latest record).",
    ["how"],
    registry=REGISTRY,
)
FORWARDED = Counter(
    "kato_forwarded_events_total",
    "Learned pattern names sent up a node chain (forward_to), by the node they went to.",
    ["node"],
    registry=REGISTRY,
)
FORWARD_LAG = Histogram(
    "kato_forward_lag_seconds",
    "Seconds from a forward_to observe's publication to its processing, by the receiving node (the lag between levels).",
    ["node"],
    buckets=(
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
        30.0,
        60.0,
    ),
    registry=REGISTRY,
)
SESSION_TICKS = Counter(
    "kato_session_ticks_total",
    "Ticks appended to idle input partitions to move their stream time (expiry.py).",
    registry=REGISTRY,
)
PARTITION_STALLS = Counter(
    "kato_partition_stalls_total",
    "Input partitions re-sought because records waited while the agent sat idle (continuity.py).",
    registry=REGISTRY,
)
SESSION_LISTS_FALLBACKS = Counter(
    "kato_session_lists_fallbacks_total",
    "Session lists (observe-time predictions, future potentials) that could not use the Redis "
    "store (session_lists.py), by action: put (kept inline in the table value) or get (read "
    "as an empty list).",
    ["action"],
    registry=REGISTRY,
)
OFFSET_HOLES = Counter(
    "kato_offset_holes_total",
    "Input offsets the consumer skipped and the agent re-read and processed (continuity.py).",
    registry=REGISTRY,
)
COMMAND_DURATION = Histogram(
    "kato_command_duration_seconds",
    "Worker time per command, from decode to output record queued.",
    ["op"],
    buckets=ENGINE_BUCKETS,
    registry=REGISTRY,
)
OBSERVATION_DURATION = Histogram(
    "kato_observation_duration_seconds",
    "Engine time per observation (event building, STM update, auto-learn, predictions); "
    "an observe_sequence of n observations records n times its time / n.",
    buckets=ENGINE_BUCKETS,
    registry=REGISTRY,
)
PREDICTION_DURATION = Histogram(
    "kato_prediction_duration_seconds",
    "Engine time to compute predictions for one non-empty STM (prediction-cache hits included).",
    buckets=ENGINE_BUCKETS,
    registry=REGISTRY,
)
LEARN_DURATION = Histogram(
    "kato_learn_duration_seconds",
    "Engine time of a learn command (auto-learns count in the observation's time).",
    buckets=ENGINE_BUCKETS,
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "kato_request_duration_seconds",
    "Gateway HTTP request time by method, route template and status code.",
    ["method", "route", "status"],
    buckets=REQUEST_BUCKETS,
    registry=REGISTRY,
)
GATEWAY_EXCHANGE = Histogram(
    "kato_gateway_exchange_seconds",
    "A gateway command's time on the stream, by command op and stage: publish (until the "
    "broker acknowledged its input record) and answer (from then until its output record was "
    "read and decoded).",
    ["op", "stage"],
    buckets=REQUEST_BUCKETS,
    registry=REGISTRY,
)
PERSIST_WAIT = Histogram(
    "kato_gateway_persist_wait_seconds",
    "Time the gateway waited for a learn's patterns to reach the stores before answering.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
PATTERNS = Gauge(
    "kato_patterns_total",
    "Patterns in a node's long-term memory, as seen by this process (set on each command).",
    ["node"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "kato_consumer_lag",
    "Records behind the high watermark of an input partition (highwater - committed offset).",
    ["topic", "partition"],
    registry=REGISTRY,
)
REBALANCES = Counter(
    "kato_rebalances_total",
    "Consumer-group rebalances this worker took part in (the first join included).",
    registry=REGISTRY,
)
TABLE_RECOVERY_PROGRESS = Gauge(
    "kato_table_recovery_progress",
    "Fraction of the changelog replayed in the current table recovery (1 = recovered).",
    registry=REGISTRY,
)
TABLE_RECOVERY_SECONDS = Gauge(
    "kato_table_recovery_seconds",
    "Duration of the last completed table recovery (Faust's recovery start to end).",
    registry=REGISTRY,
)
PATTERN_VISIBILITY = Histogram(
    "kato_pattern_visibility_seconds",
    "Delay from a pattern being learned on one worker to it being applied on this one.",
    buckets=VISIBILITY_BUCKETS,
    registry=REGISTRY,
)
EFFECTIVE_RECALL_THRESHOLD = Gauge(
    "kato_effective_recall_threshold",
    "Recall threshold used by the node's most recent prediction.",
    ["node"],
    registry=REGISTRY,
)
PREDICTION_CACHE_HITS = Counter(
    "kato_prediction_cache_hits_total", "Prediction cache hits.", registry=REGISTRY
)
PREDICTION_CACHE_MISSES = Counter(
    "kato_prediction_cache_misses_total", "Prediction cache misses.", registry=REGISTRY
)
KERNEL_ENABLED = Gauge(
    "kato_kernel_enabled",
    "1 if this process's predictions run on the C kernel (kato_stream/core/_kernel.c), 0 on the "
    "pure-Python matcher (about 100x slower; KATO_STREAM_PURE_PYTHON).",
    registry=REGISTRY,
)


def _kernel_enabled() -> float:
    from kato_stream.core import kernel  # read at scrape time: always this process's matcher

    return 1.0 if kernel.enabled() else 0.0


KERNEL_ENABLED.set_function(_kernel_enabled)

#: Every metric family name this module exposes (the names dashboards and alerts may use).
METRIC_NAMES: frozenset[str] = frozenset(
    {
        "kato_build_info",
        "kato_observations_total",
        "kato_commands_total",
        "kato_rejections_total",
        "kato_dlq_total",
        "kato_offset_holes_total",
        "kato_partition_stalls_total",
        "kato_task_failures_total",
        "kato_session_lists_fallbacks_total",
        "kato_command_duration_seconds",
        "kato_observation_duration_seconds",
        "kato_prediction_duration_seconds",
        "kato_learn_duration_seconds",
        "kato_request_duration_seconds",
        "kato_gateway_exchange_seconds",
        "kato_gateway_persist_wait_seconds",
        "kato_patterns_total",
        "kato_consumer_lag",
        "kato_rebalances_total",
        "kato_table_recovery_progress",
        "kato_table_recovery_seconds",
        "kato_pattern_visibility_seconds",
        "kato_effective_recall_threshold",
        "kato_prediction_cache_hits_total",
        "kato_prediction_cache_misses_total",
        "kato_kernel_enabled",
        "kato_sessions_live",
        "kato_session_table_entries",
        "kato_session_expirations_total",
        "kato_session_ticks_total",
        "kato_forwarded_events_total",
        "kato_forward_lag_seconds",
    }
)


# -- bounded labels ------------------------------------------------------------------------
class LabelCap:
    """Admit at most ``limit`` distinct values; later new values map to ``"_other"``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return OVERFLOW

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


class _Config:
    """Process-wide label policy (see ``configure``)."""

    def __init__(self) -> None:
        self.node_label = True
        self.nodes = LabelCap(100)
        self.reasons = LabelCap(32)
        self.routes = LabelCap(64)


_config = _Config()


def configure(settings: Settings | None = None) -> None:
    """Apply the metrics settings (node label on/off, node cap); call once at startup."""
    if settings is None:
        from kato_stream.settings import Settings

        settings = Settings.from_env()
    _config.node_label = settings.metrics_node_label
    _config.nodes = LabelCap(settings.metrics_max_nodes)


def node_label(node_id: str) -> str:
    """The ``node`` label value for ``node_id`` under the current settings."""
    if not _config.node_label:
        return ALL_NODES
    return _config.nodes(node_id)


# -- recording helpers ---------------------------------------------------------------------
class Timer:
    """Elapsed seconds of a ``timed`` block (``seconds`` is set when the block exits)."""

    __slots__ = ("seconds", "_start")

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = time.perf_counter()


@contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[Timer]:
    """Observe the block's wall time (seconds) in ``histogram``, also on exceptions."""
    t = Timer()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - t._start
        (histogram.labels(**labels) if labels else histogram).observe(t.seconds)


def observe_command(
    op: str, status: str, seconds: float | None = None, *, reason: str = ""
) -> None:
    """Count one processed command; time it; count a rejection by ``reason`` (error code)."""
    op = op if op in OPS else "unknown"
    status = status if status in STATUSES else "other"
    COMMANDS.labels(op=op, status=status).inc()
    if seconds is not None:
        COMMAND_DURATION.labels(op=op).observe(seconds)
    if status == "rejected":
        REJECTIONS.labels(reason=_config.reasons(reason or "unspecified")).inc()


def observe_observations(node_id: str, count: int = 1) -> None:
    """Count observations applied to an STM of ``node_id``."""
    if count > 0:
        OBSERVATIONS.labels(node=node_label(node_id)).inc(count)


def observe_dlq(count: int = 1) -> None:
    """Count records sent to the dead-letter topic."""
    DLQ.inc(count)


def observe_exchange(op: str, publish: float, answer: float) -> None:
    """Record a gateway command's two stages on the stream: what of a request's time is the
    broker's acknowledgement, and what the worker's answer (with the fetch that reads it)."""
    GATEWAY_EXCHANGE.labels(op=op, stage="publish").observe(publish)
    GATEWAY_EXCHANGE.labels(op=op, stage="answer").observe(answer)


def observe_persist_wait(seconds: float) -> None:
    """Record how long the gateway waited for a learn to be persisted."""
    PERSIST_WAIT.observe(seconds)


def observe_task_failure(task: str) -> None:
    """Count a failure of the background task or agent ``task``."""
    TASK_FAILURES.labels(task=task).inc()


def set_sessions_live(count: int, table_entries: int | None = None) -> None:
    """Sessions of this worker's partitions with an expiry deadline (live, not expired), and
    the entries of its session table."""
    SESSIONS_LIVE.set(count)
    if table_entries is not None:
        SESSION_TABLE_ENTRIES.set(table_entries)


def observe_session_expired(how: str, count: int = 1) -> None:
    """Count sessions expired on the stream path (``how``: command or sweep)."""
    SESSION_EXPIRATIONS.labels(how=how).inc(count)


def observe_forwarded(node_id: str, count: int = 1) -> None:
    """Count pattern names sent up the chain to ``node_id``."""
    FORWARDED.labels(node=node_label(node_id)).inc(count)


def observe_forward_lag(node_id: str, seconds: float) -> None:
    """Time a forwarded observe waited before ``node_id``'s worker processed it."""
    FORWARD_LAG.labels(node=node_label(node_id)).observe(max(0.0, seconds))


def observe_session_tick() -> None:
    """Count a tick appended to an idle input partition."""
    SESSION_TICKS.inc()


def observe_stall() -> None:
    """Count re-seeks of an input partition the consumer had stopped delivering."""
    PARTITION_STALLS.inc()


def observe_lists_fallback(action: str) -> None:
    """Count a failed put or get of the Redis store of session lists."""
    SESSION_LISTS_FALLBACKS.labels(action=action).inc()


def observe_offset_hole(count: int) -> None:
    """Count input offsets re-read because the consumer skipped them."""
    OFFSET_HOLES.inc(count)


def set_patterns(node_id: str, count: int) -> None:
    """Set the LTM size of ``node_id`` (with the node label off: the last value set)."""
    PATTERNS.labels(node=node_label(node_id)).set(count)


def set_recall_threshold(node_id: str, threshold: float) -> None:
    """Record the recall threshold actually used for ``node_id``'s latest prediction."""
    EFFECTIVE_RECALL_THRESHOLD.labels(node=node_label(node_id)).set(threshold)


def observe_visibility(learned_at: float, now: float | None = None) -> float:
    """Record the delay from ``learned_at`` (epoch seconds) to now; returns the delay."""
    delay = max(0.0, (time.time() if now is None else now) - learned_at)
    PATTERN_VISIBILITY.observe(delay)
    return delay


def cache_hit() -> None:
    """Count a prediction-cache hit."""
    PREDICTION_CACHE_HITS.inc()


def cache_miss() -> None:
    """Count a prediction-cache miss."""
    PREDICTION_CACHE_MISSES.inc()


def observe_request(method: str, route: str, status: int | str, seconds: float) -> None:
    """Record one gateway request; ``route`` must be the template (``/sessions/{id}``)."""
    method = method.upper()
    REQUEST_DURATION.labels(
        method=method if method in METHODS else "OTHER",
        route=_config.routes(route),
        status=str(status),
    ).observe(seconds)


def set_consumer_lag(topic: str, partition: int, lag: int) -> None:
    """Set the lag of one assigned partition (never negative)."""
    CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(max(0, lag))


def forget_partition(topic: str, partition: int) -> None:
    """Drop the lag series of a partition this worker no longer owns."""
    with suppress(KeyError):
        CONSUMER_LAG.remove(topic, str(partition))


def observe_rebalance(count: int = 1) -> None:
    """Count rebalances."""
    REBALANCES.inc(count)


def set_recovery(progress: float, *, finished_seconds: float | None = None) -> None:
    """Set recovery progress (0..1); with ``finished_seconds``, record a completed recovery."""
    TABLE_RECOVERY_PROGRESS.set(min(1.0, max(0.0, progress)))
    if finished_seconds is not None:
        TABLE_RECOVERY_SECONDS.set(finished_seconds)


# -- exposition ----------------------------------------------------------------------------
def render(accept: str | None = None) -> tuple[bytes, str]:
    """Exposition of ``REGISTRY`` for an ``Accept`` header: ``(body, content_type)``."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type


#: ASGI app serving the exposition (``app.mount("/metrics", asgi_app)`` in FastAPI).
asgi_app = make_asgi_app(registry=REGISTRY)

_Scope = MutableMapping[str, Any]
_ASGIApp = Callable[[_Scope, Any, Any], Awaitable[None]]


class MetricsMiddleware:
    """ASGI middleware recording ``kato_request_duration_seconds`` by route template.

    The route is the matched Starlette/FastAPI route's ``path`` (``scope["route"]``); unmatched
    requests are labelled ``"_unmatched"`` so arbitrary URLs never create series.
    """

    def __init__(self, app: _ASGIApp, *, skip: tuple[str, ...] = ("/metrics",)) -> None:
        self.app = app
        self.skip = skip

    async def __call__(self, scope: _Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path", "").startswith(self.skip):
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "_unmatched"
            observe_request(
                str(scope.get("method", "GET")), template, status, time.perf_counter() - start
            )


async def aiohttp_handler(request: Any) -> Any:
    """aiohttp handler for ``/metrics`` (``app.router.add_get("/metrics", aiohttp_handler)``)."""
    from aiohttp import web

    body, content_type = render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


# -- Faust integration (duck-typed; no faust import) ---------------------------------------
class FaustSampler:
    """Samples a Faust app: consumer lag per assigned partition, rebalances, table recovery.

    Lag is reported for the partitions the agents consume and commit (Faust's acking
    topics); the tables' changelog partitions, which a worker reads during recovery but
    never commits, and Faust's internal leader topic are left out.  Rebalances count from process start (Faust's
    ``rebalancing_count`` starts at 0, so the first join counts).  A recovery's duration
    is Faust's own start and end time of it (``Recovery._recovery_started_at`` and
    ``_recovery_ended_at``); without those (other Faust versions) it is measured between
    samples, to within ``KATO_STREAM_METRICS_LAG_INTERVAL``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._rebalances_seen = 0
        self._partitions: set[tuple[str, int]] = set()
        self._recovery_started: float | None = None
        self._recovery_total = 0
        self._recovery_ended_seen: float | None = None

    def sample(self) -> None:
        """Take one sample; missing attributes (app not started yet) are skipped."""
        self._sample_rebalances()
        self._sample_lag()
        self._sample_recovery()

    def _sample_rebalances(self) -> None:
        count = getattr(self.app, "rebalancing_count", None)
        if not isinstance(count, int):
            return
        if count > self._rebalances_seen:
            observe_rebalance(count - self._rebalances_seen)
        self._rebalances_seen = count

    def _reported(self, topic: str) -> bool:
        """A topic an agent consumes and commits (not a changelog, not Faust's leader topic)."""
        try:
            if topic in self.app.tables.changelog_topics:
                return False
        except Exception:  # no tables / not a Faust app
            pass
        acks = getattr(getattr(self.app, "topics", None), "acks_enabled_for", None)
        return bool(acks(topic)) if callable(acks) else True

    def _sample_lag(self) -> None:
        consumer = getattr(self.app, "consumer", None)
        if consumer is None:
            return
        try:
            assigned = consumer.assignment()
        except Exception:  # consumer not started / rebalancing
            return
        now: set[tuple[str, int]] = set()
        for tp in assigned:
            if not self._reported(tp.topic):
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:
                continue
            if high is None:
                continue
            done = faust_committed_offset(consumer, tp)
            set_consumer_lag(tp.topic, tp.partition, int(high) - int(done or 0))
            now.add((tp.topic, tp.partition))
        for topic, partition in self._partitions - now:
            forget_partition(topic, partition)
        self._partitions = now

    def _sample_recovery(self) -> None:
        recovery = getattr(getattr(self.app, "tables", None), "recovery", None)
        if recovery is None:
            return
        if getattr(recovery, "in_recovery", False):
            remaining = int(recovery.active_remaining_total())
            if self._recovery_started is None:
                self._recovery_started = time.monotonic()
                self._recovery_total = remaining
            self._recovery_total = max(self._recovery_total, remaining)
            total = self._recovery_total
            set_recovery(1.0 - remaining / total if total else 0.0)
            return
        started = getattr(recovery, "_recovery_started_at", None)
        ended = getattr(recovery, "_recovery_ended_at", None)
        if (
            isinstance(started, float)
            and isinstance(ended, float)
            and ended >= started
            and ended != self._recovery_ended_seen
        ):
            set_recovery(1.0, finished_seconds=ended - started)
            self._recovery_ended_seen = ended
        elif self._recovery_started is not None:
            set_recovery(1.0, finished_seconds=time.monotonic() - self._recovery_started)
        else:
            set_recovery(1.0)
        self._recovery_started = None
        self._recovery_total = 0


def install_faust(
    app: Any, settings: Settings | None = None, *, path: str = "/metrics"
) -> FaustSampler:
    """Serve ``path`` on the Faust web server and sample lag/rebalances/recovery periodically."""
    if settings is None:
        from kato_stream.settings import Settings

        settings = Settings.from_env()
    configure(settings)
    sampler = FaustSampler(app)

    async def kato_metrics(view: Any, request: Any) -> Any:
        body, content_type = render(request.headers.get("Accept"))
        return view.bytes(body, headers={"Content-Type": content_type})

    async def kato_metrics_sampler() -> None:
        sampler.sample()

    app.page(path)(kato_metrics)
    app.timer(settings.metrics_lag_interval)(kato_metrics_sampler)
    return sampler


#: A probe's answer: HTTP status (200 or 503) and its JSON body.
ProbeResult = tuple[int, dict[str, Any]]


def install_probes(
    app: Any,
    ready: Callable[[], ProbeResult],
    live: Callable[[], ProbeResult],
    *,
    ready_path: str = "/ready",
    live_path: str = "/live",
) -> None:
    """Serve the readiness and liveness probes on the Faust web server, next to
    ``/metrics`` (``kato_stream/stream/probes.py`` says what they check).  Each answers
    its callable's status and JSON body, never cached; a check that raises answers 503
    naming the error (not Faust's 500 page)."""

    def answer(view: Any, check: Callable[[], ProbeResult]) -> Any:
        try:
            status, body = check()
        except Exception as exc:
            status = 503
            body = {"status": "failing", "failing": ["probe"], "error": repr(exc), "checks": {}}
        return view.json(body, status=status, headers={"Cache-Control": "no-store"})

    async def kato_ready(view: Any, request: Any) -> Any:
        return answer(view, ready)

    async def kato_live(view: Any, request: Any) -> Any:
        return answer(view, live)

    app.page(ready_path)(kato_ready)
    app.page(live_path)(kato_live)
