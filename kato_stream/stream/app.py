"""Build the Faust app of one worker: topics, the session table, agents and services.

``build_worker(settings)`` returns a :class:`Worker` holding every part, so the CLI, the
tests and the benchmark start exactly the same wiring.  The engine is injected through an
:class:`~kato_stream.stream.processor.EngineAdapter` (the real core by default).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from kato_stream import fetch_backoff
from kato_stream.compat import faust_member_id
from kato_stream.contracts import TableValue
from kato_stream.core import kernel
from kato_stream.kafka import client_options, faust_credentials
from kato_stream.service import Service, as_mode_service
from kato_stream.settings import Settings
from kato_stream.stores.lists import ListStore
from kato_stream.stores.prediction_cache import PredictionCache, apply_redis_memory
from kato_stream.stream import codecs
from kato_stream.stream.adaptive import AdaptiveBounds, AdaptiveRecall
from kato_stream.stream.continuity import disable_gap_fill
from kato_stream.stream.group import GroupWatchdog, client_id
from kato_stream.stream.ltm import LtmRegistry, PatternFollower
from kato_stream.stream.persist import LatestWriter, PatternPersister
from kato_stream.stream.probes import WorkerProbes
from kato_stream.stream.processor import EngineAdapter, Processor

SESSIONS_TABLE = "sessions"


@dataclass
class Worker:
    """Everything one worker process runs."""

    settings: Settings
    app: faust.App
    input_topic: Any
    output_topic: Any
    patterns_topic: Any
    dlq_topic: Any
    sessions: Any
    ltm: LtmRegistry
    follower: PatternFollower
    processor: Processor
    adaptive: AdaptiveRecall | None = None
    prediction_cache: PredictionCache | None = None
    persister: PatternPersister | None = None
    latest: LatestWriter | None = None
    lists: ListStore | None = None
    boot_services: list[Any] = field(default_factory=list)
    """``mode`` services that start before the app and its consumer and stop after it: the
    probes' heartbeat and the group watchdog (``service.as_mode_service``)."""
    probes: WorkerProbes | None = None
    """What ``GET /ready`` and ``GET /live`` check (probes.py)."""

    def run(self, loglevel: str = "warning") -> None:
        """Run the worker in the foreground until SIGINT/SIGTERM (graceful) or SIGKILL."""
        QuietWorker(
            self.app, *self.boot_services, loglevel=loglevel, redirect_stdouts=False
        ).execute_from_commandline()


def fetch_bytes(settings: Settings) -> int:
    """Largest fetch of the input topic: room for a few maximal envelopes."""
    return max(4 * 1_048_576, settings.max_message_bytes * 4)


def _brokers(bootstrap: str) -> list[str]:
    return [f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()]


def _raw_topic(app: faust.App, name: str, partitions: int | None) -> Any:
    return app.topic(
        name,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


class QuietWorker(faust.Worker):
    """``faust.Worker`` without its terminal spinner.

    To spin on every log record, Faust sets the root logger to DEBUG whatever ``loglevel``
    says, so every debug call of aiokafka and Faust builds a record that the handler then
    drops: 8 % of a busy worker's samples.  Without the spinner the root logger keeps
    ``loglevel``."""

    def on_setup_root_logger(self, logger: Any, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)
        kernel.log_status("worker")  # once logging is set up, before the app connects


class SessionTable(faust.Table[str, TableValue]):
    """The session table, holding on to its changelog records until the broker has them.

    Faust only buffers a write's changelog record, and ``producer.flush()`` can return while
    the last buffered record is still on its way to the client, so the agent awaits
    :meth:`durable` where a write must be on the changelog before something else is sent
    (agents.py, before a learn)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Values in codecs.dumps's encoding, in the store (rocksdb encodes every value) and on
        # the changelog alike: Faust takes a table's value serializer from the value type
        # (json for ``None``), ignoring the schema; predictions the kernel encoded are
        # written as they are, and every stored value is the same bytes as on the wire.
        self.value_serializer = "orjson"
        # Each record's future leaves the set when the broker answers (O(1) per write, and
        # nothing kept once acknowledged: an expiry sweep writes tens of thousands of
        # tombstones at once); a failure is kept until durable() reports it.
        self._unacked: set[Any] = set()
        self._failed: BaseException | None = None

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self._unacked.add(fut)
        fut.add_done_callback(self._settled)
        return fut

    def _settled(self, fut: Any) -> None:
        self._unacked.discard(fut)
        if not fut.cancelled() and fut.exception() is not None and self._failed is None:
            self._failed = fut.exception()

    async def durable(self) -> None:
        """Return once every changelog record written so far is acknowledged (raises if one
        failed, even one that failed before this call: the agent then stops before sending
        anything that depends on it)."""
        pending = list(self._unacked)
        if pending:
            await asyncio.gather(*pending)
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed


def faust_app_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of the worker's ``faust.App`` (after its id, ``settings.app_id``).

    ``broker_credentials`` carries the Kafka security settings (kato_stream/kafka.py): Faust
    gives them to its consumer, its producer and the client that creates its topics."""
    return dict(
        broker=_brokers(settings.kafka_bootstrap),
        store=settings.table_store,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,  # unused when disabled (0), but Faust refuses 0
        autodiscover=False,
        producer_max_request_size=max(1_048_576, settings.max_message_bytes * 4),
        consumer_max_fetch_size=fetch_bytes(settings),
        broker_commit_every=settings.commit_every,
        broker_commit_interval=settings.commit_interval,
        stream_buffer_maxsize=settings.stream_buffer,
        broker_session_timeout=settings.session_timeout,
        consumer_group_instance_id=settings.instance_id or None,
        broker_client_id=client_id("worker"),  # names the process: group.py
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 6),
        producer_compression_type=None
        if settings.producer_compression == "none"
        else settings.producer_compression,
        producer_linger=settings.producer_linger_ms / 1000.0,
        producer_max_batch_size=settings.producer_batch_bytes,
        Table=SessionTable,
        broker_credentials=faust_credentials(settings),
    )


def worker_fetch_backoff(settings: Settings) -> None:
    """The idle-fetch pause of a worker process (fetch_backoff.py): an answer sent is usually
    followed by its client's next command, so it wakes the input consumer at once (the
    kato.patterns followers are woken only by pattern events)."""
    fetch_backoff.install_from(settings)
    fetch_backoff.link(settings.topic("predictions"), settings.topic("observations"))


def tune_gc(threshold: int) -> None:
    """Run the cyclic GC's young generation every ``threshold`` allocations (0: leave it).

    An observe allocates thousands of short-lived containers (the 100 predictions' dicts and
    lists, about 3,500), all freed by reference counting.  At Python's threshold of 700 they
    trigger several young collections per command, and every tenth of those a pass over the
    middle generation as well: about a quarter of the CPU of the per-command path at 1,000
    patterns, measured in process (benchmarks/README.md, bench_worker_cpu).  Only garbage in
    reference cycles depends on the GC, and it waits a little longer.
    """
    if threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(threshold, older, oldest)


def build_worker(
    settings: Settings,
    engine: EngineAdapter | None = None,
    vector_factory: Callable[[], Any] | None = None,
) -> Worker:
    """Wire a worker for ``settings``; ``engine`` defaults to the real engine core and
    ``vector_factory`` (one vector index per node) to the in-memory index.

    Raises :class:`~kato_stream.core.kernel.KernelUnavailable` (a ``SystemExit``) when the C
    kernel is missing and ``KATO_STREAM_PURE_PYTHON`` does not allow the pure-Python matcher."""
    kernel.require(settings.pure_python, "worker")
    codecs.register_faust_codec()
    worker_fetch_backoff(settings)
    tune_gc(settings.gc_threshold)
    disable_gap_fill()  # the agent's continuity guard fills holes instead (continuity.py)
    adaptive = (
        AdaptiveRecall(AdaptiveBounds.from_settings(settings)) if settings.adaptive_recall else None
    )
    cache = PredictionCache.from_settings(settings) if settings.prediction_cache else None
    if engine is None:
        from kato_stream.stream.engine_adapter import CoreEngineAdapter

        engine = CoreEngineAdapter.from_settings(settings, predictor=cache, adaptive=adaptive)
    app = faust.App(settings.app_id, **faust_app_options(settings))
    if settings.web_port > 0:
        from kato_stream.metrics import install_faust

        install_faust(app, settings)
    ltm = LtmRegistry() if vector_factory is None else LtmRegistry(vector_factory=vector_factory)
    follower = PatternFollower(settings.kafka_bootstrap, settings.topic("patterns"), ltm, settings)
    sessions = app.Table(
        SESSIONS_TABLE,
        default=None,
        partitions=settings.partitions,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="orjson"),
    )
    lists = ListStore(settings) if settings.persist and settings.session_lists == "redis" else None
    worker = Worker(
        settings=settings,
        app=app,
        input_topic=_raw_topic(app, settings.topic("observations"), settings.partitions),
        output_topic=_raw_topic(app, settings.topic("predictions"), settings.partitions),
        patterns_topic=_raw_topic(app, settings.topic("patterns"), settings.partitions),
        dlq_topic=_raw_topic(app, settings.topic("dlq"), None),
        sessions=sessions,
        ltm=ltm,
        follower=follower,
        processor=Processor.from_settings(engine, ltm, settings, external_lists=lists is not None),
        adaptive=adaptive,
        prediction_cache=cache,
        persister=PatternPersister(settings) if settings.persist else None,
        latest=LatestWriter(settings) if settings.persist else None,
        lists=lists,
    )
    probes = _install_probes(worker)
    _add_ltm_service(worker)
    if settings.evict_dead_members:
        probes.watchdog = _add_group_watchdog(worker)
    _add_persist_service(worker)

    from kato_stream.stream.agents import register_agents

    register_agents(worker)
    return worker


def _install_probes(worker: Worker) -> WorkerProbes:
    """The worker's readiness and liveness probes, beating first among its boot services."""
    settings, app = worker.settings, worker.app
    services: dict[str, Service] = {}
    if worker.persister is not None and worker.latest is not None:
        services = {"persister": worker.persister, "latest_writer": worker.latest}
    probes = WorkerProbes(
        app,
        settings.topic("observations"),
        worker.follower,
        services=services,
        persister=worker.persister,
    )
    worker.probes = probes
    # first: beats until the app stopped
    worker.boot_services.append(as_mode_service([probes.heartbeat])())
    if settings.web_port > 0:
        from kato_stream.metrics import install_probes

        install_probes(app, probes.ready, probes.live)
    return probes


def _add_ltm_service(worker: Worker) -> None:
    """The pattern follower starts with the app, after Redis's memory policy, the prediction
    cache and the session-list store (the agent waits for the follower and uses the rest)."""
    settings = worker.settings

    async def redis_memory() -> None:
        if settings.redis_maxmemory or settings.redis_maxmemory_policy:
            from kato_stream.stores.connect import redis_sync_client

            client = redis_sync_client(settings, socket_timeout=settings.store_timeout)
            with client:
                apply_redis_memory(
                    client, settings.redis_maxmemory, settings.redis_maxmemory_policy
                )

    services: list[Service] = [s for s in (worker.prediction_cache, worker.lists) if s is not None]
    worker.app.service(as_mode_service([*services, worker.follower], before=redis_memory))


def _add_group_watchdog(worker: Worker) -> GroupWatchdog:
    """The watchdog that evicts provably dead members of this worker's consumer groups."""
    settings, app, persister = worker.settings, worker.app, worker.persister
    groups = [settings.app_id] + ([persister.group_id] if persister else [])

    def own() -> dict[str, str]:
        """This process's consumers: client id -> the member id each holds now."""
        out = {}
        if (mid := faust_member_id(app)) is not None:
            out[client_id("worker")] = mid
        if persister is not None and (mid := persister.member_id()) is not None:
            out[client_id("persist")] = mid
        return out

    watchdog = GroupWatchdog(
        settings.kafka_bootstrap,
        groups,
        interval=max(1.0, settings.session_timeout / 3),
        own=own,
        kafka_options=client_options(settings),
    )
    worker.boot_services.append(as_mode_service([watchdog])())
    return watchdog


def _add_persist_service(worker: Worker) -> None:
    """The persister and the latest-record writer (kato.patterns -> stores, persist.py) start
    and stop with the app, when the worker persists."""
    if worker.persister is None or worker.latest is None:
        return
    worker.app.service(as_mode_service([worker.persister, worker.latest]))
