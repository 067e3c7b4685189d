"""Long-term memory shared by every worker: one KnowledgeBase (+ vector index) per node.

Why a private follower rather than a Faust GlobalTable: a GlobalTable has a record of
diverging across workers, and the LTM is not a key/value map anyway but a fold over learn
and clear events.  So every worker keeps its own in-memory registry and folds the whole
``kato.patterns`` topic into it with a *group-less* consumer assigned to every partition:

* local learns are applied at once by ``Engine.handle`` (read-your-writes for the learning
  session) and then published; their echo from the topic is a no-op because
  ``KnowledgeBase.apply_learn`` is idempotent by ``learn_id``;
* other workers' learns arrive through the topic within one poll (the measured delay is in
  ``benchmarks/README.md``);
* a worker that starts empty (first start, crash, new worker) rebuilds its LTM by reading the
  topic from the beginning up to the end offsets seen at start, *before* its agents process
  their first command (``ready``), so replayed commands see the same LTM they saw first.

The pattern topic keeps everything (``retention.ms=-1``); it is the replication log.
ClickHouse is the durable, queryable copy written by :mod:`kato_stream.stream.persist`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kato_stream import metrics
from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.stream import codecs

log = logging.getLogger(__name__)


def _memory_index() -> Any:
    from kato_stream.core.vectors import MemoryVectorIndex

    return MemoryVectorIndex()


@dataclass
class NodeMemory:
    """One node's long-term memory: its knowledge base and its vector index."""

    kb: KnowledgeBase
    vectors: Any


@dataclass
class LtmRegistry:
    """Every node's memory on this worker, created on first use."""

    vector_factory: Callable[[], Any] = _memory_index
    nodes: dict[str, NodeMemory] = field(default_factory=dict)
    applied_events: int = 0

    def node(self, node_id: str) -> NodeMemory:
        mem = self.nodes.get(node_id)
        if mem is None:
            mem = NodeMemory(KnowledgeBase(node_id=node_id), self.vector_factory())
            self.nodes[node_id] = mem
        return mem

    def apply_event(self, event: dict[str, Any]) -> bool:
        """Fold one pattern-topic event in; ``False`` if it changed nothing (already applied)."""
        kind = event.get("type")
        mem = self.node(str(event["node_id"]))
        if kind == "learn":
            ev = LearnEvent.from_dict(event)
            if not mem.kb.apply_learn(ev):
                return False
            for name, values in ev.vectors:
                mem.vectors.add(name, list(values))
        elif kind == "clear":
            if not mem.kb.clear(str(event["clear_id"])):
                return False
            mem.vectors.clear()
        else:
            raise ValueError(f"unknown pattern event type {kind!r}")
        self.applied_events += 1
        return True


def learn_event_dict(ev: LearnEvent) -> dict[str, Any]:
    """The ``kato.patterns`` value of a learn (contracts §2)."""
    return {"type": "learn", **ev.to_dict()}


def clear_event_dict(node_id: str, clear_id: str) -> dict[str, Any]:
    """The ``kato.patterns`` value of a clear-all."""
    return {"type": "clear", "node_id": node_id, "clear_id": clear_id}


class PatternFollower:
    """Folds ``kato.patterns`` (all partitions, no consumer group) into an :class:`LtmRegistry`.

    ``ready`` is set once everything present at start has been applied.  ``delays`` keeps
    the last broker-timestamp-to-applied delays (seconds) of events this worker did not
    apply itself, i.e. the cross-worker visibility delay.
    """

    def __init__(self, bootstrap: str, topic: str, registry: LtmRegistry) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.registry = registry
        self.ready = asyncio.Event()
        self.delays: list[float] = []
        self.errors = 0
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            await self._consumer._client.force_metadata_update()  # noqa: SLF001
            parts = self._consumer.partitions_for_topic(self.topic) or set()
        if not parts:
            raise RuntimeError(
                f"topic {self.topic} does not exist: run `kato-stream topics create`"
            )
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        end = await self._consumer.end_offsets(tps)
        self._task = asyncio.create_task(self._run(end), name="kato-ltm-follower")

    async def _run(self, end: dict[Any, int]) -> None:
        pending = {tp: off for tp, off in end.items() if off > 0}
        if not pending:
            self.ready.set()
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            now = time.time()
            for tp, msgs in batches.items():
                for msg in msgs:
                    try:
                        changed = self.registry.apply_event(codecs.loads(msg.value))
                    except Exception:  # a bad event must not stop replication
                        self.errors += 1
                        log.exception("bad pattern event at %s:%s", tp, msg.offset)
                        continue
                    if changed and self.ready.is_set():
                        self.delays.append(metrics.observe_visibility(msg.timestamp / 1000.0, now))
                        if len(self.delays) > 10_000:
                            del self.delays[:5_000]
                    if tp in pending and msg.offset + 1 >= pending[tp]:
                        del pending[tp]
            if pending:
                # partitions already at their end produce no records: check positions
                for tp in list(pending):
                    if await self._consumer.position(tp) >= pending[tp]:
                        del pending[tp]
            if not pending and not self.ready.is_set():
                log.info("LTM rebuilt: %d events applied", self.registry.applied_events)
                self.ready.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
