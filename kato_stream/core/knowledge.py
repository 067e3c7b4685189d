"""Long-term memory of one node (KATO's knowledge base), held in memory.

Everything the predictor reads lives here: pattern bodies, frequencies, emotives,
metadata, symbol statistics, the global counters, affinities and the finalize-training
metrics.  It changes only through :meth:`KnowledgeBase.apply_learn`, which takes a
:class:`LearnEvent` carrying its own idempotency key (``learn_id``): applying the same
event twice is a no-op, so the stream layer can replay and redeliver freely.

Bookkeeping follows KATO's Redis writes exactly (spec §4.2): ``pmf`` counts distinct
patterns, ``total_pattern_frequencies`` counts *new* patterns only, affinities are
running sums of the per-learn emotive averages.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .prefilter import PatternIndex

Event = tuple[str, ...]
Events = tuple[Event, ...]
EmotiveDict = Mapping[str, float]


def average_emotives(dicts: Sequence[EmotiveDict]) -> dict[str, float]:
    """Per-key arithmetic mean over the dicts that carry the key (KATO's rule, §2.4).

    Keys come out in first-seen order, as KATO's dict-based averaging does.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


def merge_metadata(
    old: Mapping[str, Sequence[str]], new: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """Per-key sorted set-union of string values (KATO's re-learn merge, §4.2)."""
    out: dict[str, set[str]] = {k: set(v) for k, v in old.items()}
    for k, v in new.items():
        out.setdefault(k, set()).update(v)
    return {k: sorted(v) for k, v in out.items()}


@dataclass(frozen=True)
class LearnEvent:
    """One learn that stores a pattern: the unit of replication between workers.

    ``learn_id`` identifies the learn command (client message id, else the source
    topic/partition/offset), so a redelivered command counts once.
    ``emotives`` is the untrimmed list passed by the learn; ``metadata`` is already
    collapsed to sorted string lists.  ``persistence`` is the emotive window in force
    for the learning session.  ``vectors`` are the (name, values) pairs that the learn
    indexes into the node's vector store.
    """

    node_id: str
    learn_id: str
    name: str
    events: Events
    emotives: tuple[dict[str, float], ...] = ()
    metadata: dict[str, list[str]] = field(default_factory=dict)
    persistence: int = 5
    vectors: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "learn_id": self.learn_id,
            "name": self.name,
            "events": [list(e) for e in self.events],
            "emotives": [dict(d) for d in self.emotives],
            "metadata": {k: list(v) for k, v in self.metadata.items()},
            "persistence": self.persistence,
            "vectors": [[n, list(v)] for n, v in self.vectors],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LearnEvent:
        return cls(
            node_id=str(d["node_id"]),
            learn_id=str(d["learn_id"]),
            name=str(d["name"]),
            events=tuple(tuple(str(s) for s in e) for e in d["events"]),
            emotives=tuple({str(k): float(v) for k, v in e.items()} for e in d.get("emotives", ())),
            metadata={str(k): [str(x) for x in v] for k, v in d.get("metadata", {}).items()},
            persistence=int(d.get("persistence", 5)),
            vectors=tuple((str(n), tuple(float(x) for x in v)) for n, v in d.get("vectors", ())),
        )


@dataclass
class Precomputed:
    """finalize-training's per-pattern metrics (spec §4.8), whole-pattern based."""

    entropy: float
    normalized_entropy: float
    global_normalized_entropy: float
    tf_vector: dict[str, float]


@dataclass
class PatternRecord:
    """A stored pattern and its mutable counters."""

    name: str
    events: Events
    flat: tuple[str, ...]
    frequency: int
    emotives: list[dict[str, float]]
    metadata: dict[str, list[str]]

    @property
    def length(self) -> int:
        """Total symbols (ClickHouse ``length``)."""
        return len(self.flat)

    @property
    def first_token(self) -> str:
        """``pattern_data[0][0]`` or ``''`` (the fast path's candidate key)."""
        return self.events[0][0] if self.events and self.events[0] else ""

    def to_api(self) -> dict[str, Any]:
        """The record as ``GET /pattern/{id}`` shows it."""
        return {
            "name": "PTRN|" + self.name,
            "pattern_data": [list(e) for e in self.events],
            "length": self.length,
            "frequency": self.frequency,
            "emotives": [dict(d) for d in self.emotives],
            "metadata": {k: list(v) for k, v in self.metadata.items()},
        }


@dataclass
class FirstTokenRanking:
    """The fast path's patterns per first token, best first, for one state of the KB.

    Valid while the KB's ``version`` equals ``version`` and its ``patterns`` dict is
    ``patterns`` (a clear replaces the dict); ``by_symbol`` fills in per symbol on demand.
    """

    version: int
    patterns: dict[str, PatternRecord]
    by_symbol: dict[str, list[PatternRecord]] = field(default_factory=dict)


@dataclass
class DerivedCaches:
    """In-process structures derived from a KB's patterns, owned by the KB.

    Why here: they live exactly as long as the knowledge base they are derived from, and
    every reader finds them in one declared, typed place.  They are not state: excluded
    from equality and ``repr``, never serialized, and ``clear`` starts over with empty
    ones.  Each checks its own validity when used (``prefilter.pattern_index``: the
    identity of ``patterns``, then appended patterns; ``predictor.fast_path``: ``version``).
    """

    pattern_index: PatternIndex | None = None
    first_token: FirstTokenRanking | None = None


@dataclass
class KnowledgeBase:
    """All learned state of one node.  Mutated only by ``apply_learn``/``clear``/``finalize``.

    ``version`` increases on every effective change; in-process caches key on it.
    ``fingerprint`` is a hash chain over every effective change (learn ids, clear ids,
    finalize metrics) in the order applied: equal fingerprints mean equal knowledge bases,
    also across workers, which is what lets workers share cached predictions.  It is
    order-dependent on purpose: a learn before or after a clear, or the emotive window,
    make the state depend on the order, not only on the set of applied ids.
    ``caches`` holds what the predictor derives from the patterns (:class:`DerivedCaches`).
    """

    node_id: str
    patterns: dict[str, PatternRecord] = field(default_factory=dict)
    symbol_freq: Counter[str] = field(default_factory=Counter)
    pmf: Counter[str] = field(default_factory=Counter)
    total_symbols_in_patterns_frequencies: int = 0
    total_pattern_frequencies: int = 0
    total_unique_patterns: int = 0
    affinity: dict[str, dict[str, float]] = field(default_factory=dict)
    precomputed: dict[str, Precomputed] = field(default_factory=dict)
    by_first_token: dict[str, list[str]] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    version: int = 0
    fingerprint: str = ""
    caches: DerivedCaches = field(default_factory=DerivedCaches, compare=False, repr=False)

    def _chain(self, kind: str, text: str) -> None:
        data = f"{self.fingerprint}\x00{kind}\x00{text}".encode()
        self.fingerprint = hashlib.sha1(data).hexdigest()

    # -- writes -----------------------------------------------------------------------

    def apply_learn(self, ev: LearnEvent) -> bool:
        """Apply one learn; ``False`` (and no change) if ``ev.learn_id`` was applied before."""
        if ev.learn_id in self.applied:
            return False
        self.applied.add(ev.learn_id)
        flat = tuple(s for e in ev.events for s in e)
        counts = Counter(flat)
        rec = self.patterns.get(ev.name)
        keep = max(1, ev.persistence)
        if rec is None:
            rec = PatternRecord(
                name=ev.name,
                events=ev.events,
                flat=flat,
                frequency=1,
                emotives=[dict(d) for d in ev.emotives][-keep:],
                metadata={k: sorted(set(v)) for k, v in ev.metadata.items()},
            )
            self.patterns[ev.name] = rec
            self.by_first_token.setdefault(rec.first_token, []).append(ev.name)
            for s in counts:
                self.pmf[s] += 1
            self.total_pattern_frequencies += 1
            self.total_unique_patterns += 1
        else:
            rec.frequency += 1
            if ev.emotives or ev.metadata:
                rec.emotives = (rec.emotives + [dict(d) for d in ev.emotives])[-keep:]
                rec.metadata = merge_metadata(rec.metadata, ev.metadata)
        for s, c in counts.items():
            self.symbol_freq[s] += c
        self.total_symbols_in_patterns_frequencies += len(flat)
        if ev.emotives:
            avg = average_emotives(ev.emotives)
            for s in counts:
                aff = self.affinity.setdefault(s, {})
                for k, v in avg.items():
                    aff[k] = aff.get(k, 0.0) + v
        self.version += 1
        self._chain("learn", ev.learn_id)
        return True

    def clear(self, clear_id: str) -> bool:
        """Forget everything learned (clear-all); ``False`` if ``clear_id`` was applied.

        Applied learn and clear ids are kept, so the echo of an earlier learn or of this
        clear arriving later from the pattern topic cannot resurrect or re-clear anything,
        and replaying a range twice leaves the node as after one replay.
        """
        if clear_id in self.applied:
            return False
        applied = self.applied | {clear_id}
        version = self.version + 1
        fingerprint = self.fingerprint
        self.__init__(node_id=self.node_id)  # type: ignore[misc]
        self.applied = applied
        self.version = version
        self.fingerprint = fingerprint
        self._chain("clear", clear_id)
        return True

    def set_precomputed(self, name: str, metrics: Precomputed) -> None:
        self.precomputed[name] = metrics
        self.version += 1
        self._chain("precomputed", f"{name}\x00{metrics!r}")

    # -- reads ------------------------------------------------------------------------

    @property
    def distinct_symbols(self) -> int:
        """S: number of distinct symbols known to the node (``HLEN symbols:freq``)."""
        return len(self.symbol_freq)

    def get(self, name: str) -> PatternRecord | None:
        """Look a pattern up by bare hash or ``PTRN|hash``."""
        return self.patterns.get(name[5:] if name.startswith("PTRN|") else name)

    def candidates_first_token(self, symbol: str) -> Iterable[PatternRecord]:
        """Patterns whose first stored symbol is ``symbol`` (single-symbol fast path)."""
        for n in self.by_first_token.get(symbol, ()):
            yield self.patterns[n]
