"""The real engine core behind the stream layer's :class:`EngineAdapter` seam.

The only module of the stream package that knows the core's ``Command``/``SessionState``
shapes: it converts an envelope plus its source into a ``Command``, the stored table dict
into a ``SessionState`` and back, and keeps one ``Engine`` for the worker (the engine is
stateless apart from its defaults).

It also records the engine metrics (``kato_stream.metrics``): observation, learn and
prediction durations, observations applied and the node's LTM size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from kato_stream import metrics
from kato_stream.core.config import EngineDefaults
from kato_stream.core.engine import Command, CommandResult, Engine, Predictor
from kato_stream.core.errors import PatternTooLarge
from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.core.predictions import MatcherOptions, PredictionResult, PredictParams, predict
from kato_stream.core.session import SessionState
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.adaptive import AdaptiveRecall
from kato_stream.stream.envelope import Envelope
from kato_stream.stream.ltm import NodeMemory, learn_event_dict
from kato_stream.stream.processor import Handled, Source


def source_id(source: Source) -> str:
    """``"topic:partition:offset"``: the command's identity when it has no msg_id."""
    return f"{source.topic}:{source.partition}:{source.offset}"


#: The stream path's predictions: the process's matcher, and where the C kernel computes,
#: the predictions as the JSON bytes the output record and the session lists carry.
STREAM_MATCHER = MatcherOptions(encoded=True)


def timed_predict(
    kb: KnowledgeBase, stm: Sequence[Sequence[str]], params: PredictParams
) -> PredictionResult:
    """``predict``, timed in ``kato_prediction_duration_seconds`` when the STM is not empty."""
    if not any(stm):
        return predict(kb, stm, params, STREAM_MATCHER)
    with metrics.timed(metrics.PREDICTION_DURATION):
        return predict(kb, stm, params, STREAM_MATCHER)


def pattern_guard(limit: int) -> Callable[[LearnEvent], None]:
    """The engine's ``admit`` hook: refuse a learn whose ``kato.patterns`` record (keyed by
    its node) would be larger than ``limit`` bytes, before it changes the knowledge base."""

    def admit(ev: LearnEvent) -> None:
        size = len(codecs.dumps(learn_event_dict(ev))) + len(ev.node_id.encode("utf-8"))
        if size > limit:
            raise PatternTooLarge(
                f"the learned pattern would be a {size}-byte record, limit is {limit}: "
                "nothing was learned (observe fewer or smaller symbols, or raise "
                "KATO_STREAM_MAX_OUTPUT_BYTES with the topics' max.message.bytes)",
                {"size": size, "limit": limit},
            )

    return admit


def record_metrics(op: str, node_id: str, result: CommandResult, seconds: float, mem: Any) -> None:
    """Engine metrics of one accepted command that took ``seconds`` in ``Engine.handle``.

    An ``observe`` is one observation; an ``observe_sequence`` of n observations counts n,
    each with a time of ``seconds / n``.  A ``learn`` command's time goes to the learn
    histogram (auto-learns are part of their observation's time).
    """
    if op == "observe":
        metrics.OBSERVATION_DURATION.observe(seconds)
        metrics.observe_observations(node_id, 1)
    elif op == "observe_sequence":
        n = int(result.response.get("observations_processed") or 0)
        for _ in range(n):
            metrics.OBSERVATION_DURATION.observe(seconds / n)
        metrics.observe_observations(node_id, n)
    elif op == "learn":
        metrics.LEARN_DURATION.observe(seconds)
    metrics.set_patterns(node_id, len(mem.kb.patterns))


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
        # A caching predictor times itself (PredictionCache); the plain one is wrapped.
        engine = Engine(
            EngineDefaults.from_object(settings),
            predictor or timed_predict,
            admit=pattern_guard(settings.max_output_bytes),
        )
        return cls(engine, adaptive)

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
        t0 = time.perf_counter()
        r = self.engine.handle(self.command(env, source), st, mem.kb, mem.vectors, floor)
        record_metrics(env.op, env.node_id, r, time.perf_counter() - t0, mem)
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
