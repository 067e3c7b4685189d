"""Every node's long-term memory on this worker (knowledge base and vector index), and the
fold of one ``kato.patterns`` event into it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kato_stream.core.knowledge import KnowledgeBase, LearnEvent

__all__ = ["LtmRegistry", "NodeMemory"]


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

    def apply_event(self, event: Mapping[str, Any]) -> bool:
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
