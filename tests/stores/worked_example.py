"""A worked example of learns on one node, with KATO's expected Redis values (spec §4.2)."""

from __future__ import annotations

from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.core.naming import pattern_name

P1_EVENTS = (("a", "b"), ("c",))
P2_EVENTS = (("b",), ("d", "d"))
P1 = pattern_name(P1_EVENTS)
P2 = pattern_name(P2_EVENTS)


def learns(node_id: str) -> list[LearnEvent]:
    """m1 new P1; m2 re-learn with emotives+metadata; m3 new P2 (no extras);
    m4 re-learn without extras (stored values untouched); m5 re-learn with persistence 2."""
    return [
        LearnEvent(
            node_id, "m1", P1, P1_EVENTS,
            emotives=({"joy": 0.9}, {"joy": 0.5, "fear": 0.2}),
            metadata={"src": ["x"]},
        ),
        LearnEvent(
            node_id, "m2", P1, P1_EVENTS,
            emotives=({"joy": 0.1},),
            metadata={"src": ["w"], "k": ["1"]},
        ),
        LearnEvent(node_id, "m3", P2, P2_EVENTS),
        LearnEvent(node_id, "m4", P1, P1_EVENTS),
        LearnEvent(node_id, "m5", P1, P1_EVENTS, emotives=({"joy": 0.3},), persistence=2),
    ]  # fmt: skip


# What KATO's Redis holds after m1..m5 (worked by hand from spec §4.2).
EXPECTED = {
    "p1": {
        "frequency": 4,
        "emotives": [{"joy": 0.1}, {"joy": 0.3}],
        "metadata": {"src": ["w", "x"], "k": ["1"]},
    },
    "p2": {"frequency": 1, "emotives": [], "metadata": {}},
    "symbols_freq": {"a": 4, "b": 5, "c": 4, "d": 2},
    "pmf": {"a": 1, "b": 2, "c": 1, "d": 1},
    "globals": {
        "total_symbols_in_patterns_frequencies": 15,
        "total_pattern_frequencies": 2,
        "total_unique_patterns": 2,
    },
    "affinity_abc": {"joy": 1.1, "fear": 0.2},
}


def applied(node_id: str, events: list[LearnEvent]) -> KnowledgeBase:
    kb = KnowledgeBase(node_id=node_id)
    for ev in events:
        kb.apply_learn(ev)
    return kb


def kb_view(kb: KnowledgeBase) -> dict[str, object]:
    """Everything a prediction reads, in comparable form (``version`` excluded)."""
    return {
        "patterns": {n: r.to_api() for n, r in sorted(kb.patterns.items())},
        "symbol_freq": dict(kb.symbol_freq),
        "pmf": dict(kb.pmf),
        "globals": (
            kb.total_symbols_in_patterns_frequencies,
            kb.total_pattern_frequencies,
            kb.total_unique_patterns,
        ),
        "affinity": kb.affinity,
        "by_first_token": kb.by_first_token,
        "applied": kb.applied,
    }
