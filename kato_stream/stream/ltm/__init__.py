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
* a worker that starts empty (first start, crash, new worker) rebuilds its LTM *before* its
  agents process their first command (``ready``), so replayed commands see the same LTM
  they saw first.  How (``KATO_STREAM_LTM_BOOTSTRAP``):

  - ``stream`` (default): read the topic from the beginning up to the end offsets seen at
    start;
  - ``stores``: read the persister group's committed offset ``W_p`` of every partition
    (the persister commits only after ClickHouse acknowledged, so every event below ``W_p``
    is in ClickHouse), load from ClickHouse every learn and clear-all whose
    ``(topic_partition, seq)`` is below ``W_p`` (``ClickHouseStore.load_log``), apply them
    in (partition, offset) order - exactly as the fold would, a node's events being in one
    partition because the topic is keyed by node id - then read the topic from ``W_p``.
    Knowledge bases and vector indexes are rebuilt by the same ``LtmRegistry.apply_event``
    as the fold, so the result is the same.  A partition is folded from offset 0 instead
    when ``W_p`` is unknown (no commit, or beyond the topic's end), when ClickHouse holds no
    event of it below ``W_p``, or when the event at ``W_p - 1`` is missing from ClickHouse
    (a different or restored database).  The whole snapshot is dropped (full fold) when
    ClickHouse is unreachable, empty, or holds rows without a partition (written before
    the column existed).  One log line says which bootstrap ran and how many events came
    from ClickHouse and from the topic (``bootstrap_report``).

The pattern topic keeps everything (``retention.ms=-1``); it is the replication log.
ClickHouse is the durable, queryable copy written by :mod:`kato_stream.stream.persist`.

The parts: :mod:`.registry` (the nodes' memories and the fold of one event), :mod:`.events`
(the topic's values), :mod:`.follower` (the Kafka follower and the rebuild) and
:mod:`.bootstrap` (the stores' side of the rebuild).
"""

from __future__ import annotations

from kato_stream.stream.ltm.bootstrap import BootstrapReport, persisted_offsets
from kato_stream.stream.ltm.events import clear_event_dict, learn_event_dict
from kato_stream.stream.ltm.follower import YIELD_SECONDS, PatternFollower
from kato_stream.stream.ltm.registry import LtmRegistry, NodeMemory

__all__ = [
    "YIELD_SECONDS",
    "BootstrapReport",
    "LtmRegistry",
    "NodeMemory",
    "PatternFollower",
    "clear_event_dict",
    "learn_event_dict",
    "persisted_offsets",
]
