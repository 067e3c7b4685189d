"""Per-session state: everything one session's commands read and write.

The stream layer keeps it in a changelog-backed table, so it must serialise to plain
JSON types and come back identical (``from_dict(to_dict(s)) == s``).  Deferred
vectors live here rather than per node (KATO shares them per worker process, which
makes results depend on request interleaving).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kato_stream.core.config import SessionConfig
from kato_stream.core.predictor.encoded import own

MAX_STM_SIZE = 1000
MAX_ACCUMULATOR_SIZE = 1000
MAX_DEFERRED_VECTORS = 1000


@dataclass
class SessionState:
    """One session: STM, accumulators, time, config, deferred vectors, last outputs."""

    session_id: str
    node_id: str
    stm: list[list[str]] = field(default_factory=list)
    emotives_accumulator: list[dict[str, float]] = field(default_factory=list)
    metadata_accumulator: list[dict[str, Any]] = field(default_factory=list)
    time: int = 0
    config: SessionConfig = field(default_factory=SessionConfig)
    deferred_vectors: list[tuple[str, list[float]]] = field(default_factory=list)
    predictions: Sequence[dict[str, Any]] = field(default_factory=list)
    predictions_id: str | None = None
    """Identity of ``predictions`` (None when empty): lets a store keep the bulky list
    outside the session value and check on reading that it holds this very list."""
    future_potentials: Sequence[dict[str, Any]] = field(default_factory=list)
    future_potentials_id: str | None = None
    """Identity of ``future_potentials`` (None when empty), as ``predictions_id``."""
    percept_data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    ttl_seconds: int | None = None
    last_offset: str | None = None

    def trim(
        self,
        max_stm: int = MAX_STM_SIZE,
        max_acc: int = MAX_ACCUMULATOR_SIZE,
        max_vectors: int = MAX_DEFERRED_VECTORS,
    ) -> None:
        """KATO's caps on save: last 1000 STM events and accumulator entries."""
        if len(self.stm) > max_stm:
            self.stm = self.stm[-max_stm:]
        if len(self.emotives_accumulator) > max_acc:
            self.emotives_accumulator = self.emotives_accumulator[-max_acc:]
        if len(self.metadata_accumulator) > max_acc:
            self.metadata_accumulator = self.metadata_accumulator[-max_acc:]
        if len(self.deferred_vectors) > max_vectors:
            self.deferred_vectors = self.deferred_vectors[-max_vectors:]

    def copy(self) -> SessionState:
        """A copy safe to mutate (events, accumulators and vectors are copied)."""
        return SessionState(
            session_id=self.session_id,
            node_id=self.node_id,
            stm=[list(e) for e in self.stm],
            emotives_accumulator=[dict(d) for d in self.emotives_accumulator],
            metadata_accumulator=[dict(d) for d in self.metadata_accumulator],
            time=self.time,
            config=self.config,
            deferred_vectors=[(n, list(v)) for n, v in self.deferred_vectors],
            predictions=own(self.predictions),
            predictions_id=self.predictions_id,
            future_potentials=own(self.future_potentials),
            future_potentials_id=self.future_potentials_id,
            percept_data=dict(self.percept_data),
            metadata=dict(self.metadata),
            ttl_seconds=self.ttl_seconds,
            last_offset=self.last_offset,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (lists, dicts, str, numbers, bool, None), and predictions
        the kernel encoded (``EncodedPredictions``: stream/codecs.py writes their bytes)."""
        return {
            "session_id": self.session_id,
            "node_id": self.node_id,
            "stm": [list(e) for e in self.stm],
            "emotives_accumulator": [dict(d) for d in self.emotives_accumulator],
            "metadata_accumulator": [dict(d) for d in self.metadata_accumulator],
            "time": self.time,
            "config": self.config.to_dict(),
            "deferred_vectors": [[n, list(v)] for n, v in self.deferred_vectors],
            "predictions": own(self.predictions),
            "predictions_id": self.predictions_id,
            "future_potentials": own(self.future_potentials),
            "future_potentials_id": self.future_potentials_id,
            "percept_data": dict(self.percept_data),
            "metadata": dict(self.metadata),
            "ttl_seconds": self.ttl_seconds,
            "last_offset": self.last_offset,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionState:
        ttl = d.get("ttl_seconds")
        last = d.get("last_offset")
        pid = d.get("predictions_id")
        fid = d.get("future_potentials_id")
        return cls(
            session_id=str(d["session_id"]),
            node_id=str(d["node_id"]),
            stm=[[str(s) for s in e] for e in d.get("stm", [])],
            emotives_accumulator=[
                {str(k): float(v) for k, v in e.items()} for e in d.get("emotives_accumulator", [])
            ],
            metadata_accumulator=[dict(e) for e in d.get("metadata_accumulator", [])],
            time=int(d.get("time", 0)),
            config=SessionConfig.from_dict(d.get("config", {})),
            deferred_vectors=[
                (str(n), [float(x) for x in v]) for n, v in d.get("deferred_vectors", [])
            ],
            predictions=own(d.get("predictions", [])),
            predictions_id=None if pid is None else str(pid),
            future_potentials=own(d.get("future_potentials", [])),
            future_potentials_id=None if fid is None else str(fid),
            percept_data=dict(d.get("percept_data", {})),
            metadata=dict(d.get("metadata", {})),
            ttl_seconds=None if ttl is None else int(ttl),
            last_offset=None if last is None else str(last),
        )
