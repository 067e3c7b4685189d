"""The real engine core behind the stream layer's :class:`EngineAdapter` seam.

The only module of the stream package that knows the core's ``Command``/``SessionState``
shapes: it converts an envelope plus its source into a ``Command``, the stored table dict
into a ``SessionState`` and back, and keeps one ``Engine`` for the worker (the engine is
stateless apart from its defaults).
"""

from __future__ import annotations

from typing import Any

from kato_stream.core.config import EngineDefaults
from kato_stream.core.engine import Command, Engine, Predictor
from kato_stream.core.session import SessionState
from kato_stream.settings import Settings
from kato_stream.stream.adaptive import AdaptiveRecall
from kato_stream.stream.envelope import Envelope
from kato_stream.stream.ltm import NodeMemory
from kato_stream.stream.processor import Handled, Source


def source_id(source: Source) -> str:
    """``"topic:partition:offset"``: the command's identity when it has no msg_id."""
    return f"{source.topic}:{source.partition}:{source.offset}"


class CoreEngineAdapter:
    """``Engine.handle`` with table-dict state; under load, the adaptive recall floor."""

    def __init__(self, engine: Engine, adaptive: AdaptiveRecall | None = None) -> None:
        self.engine = engine
        self.adaptive = adaptive

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        predictor: Predictor | None = None,
        adaptive: AdaptiveRecall | None = None,
    ) -> CoreEngineAdapter:
        return cls(Engine(EngineDefaults.from_object(settings), predictor), adaptive)

    def command(self, env: Envelope, source: Source) -> Command:
        return Command(
            op=env.op,
            session_id=env.session_id,
            node_id=env.node_id,
            payload=env.payload,
            msg_id=env.msg_id,
            source=env.origin or source_id(source),
        )

    def handle(
        self, env: Envelope, source: Source, state: dict[str, Any] | None, mem: NodeMemory
    ) -> Handled:
        st = SessionState.from_dict(state) if state is not None else None
        floor = self.adaptive.floor if self.adaptive is not None else None
        r = self.engine.handle(self.command(env, source), st, mem.kb, mem.vectors, floor)
        new = r.state
        return Handled(
            state=new.to_dict() if new is not None else None,
            stm_length=len(new.stm) if new is not None else 0,
            time=new.time if new is not None else (st.time if st is not None else 0),
            response=r.response,
            predictions=r.predictions,
            future_potentials=r.future_potentials,
            learned=list(r.learned),
            cleared=r.cleared,
            recall_threshold=r.recall_threshold,
        )

    def summary(self, state: dict[str, Any] | None) -> tuple[int, int]:
        if not state:
            return (0, 0)
        return (len(state.get("stm", [])), int(state.get("time", 0)))
