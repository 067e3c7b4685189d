"""A trivial engine adapter for plumbing tests while (or where) the real engine is not needed.

STM = list of observed symbol lists; ``learn`` stores the STM as a pattern (name = sha1 of its
repr), ``predictions`` = names of known patterns sharing a symbol with the STM, sorted.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kato_stream.core.errors import KatoError
from kato_stream.core.knowledge import LearnEvent
from kato_stream.stream.envelope import Envelope
from kato_stream.stream.ltm import NodeMemory
from kato_stream.stream.processor import Handled, Source


class _MemIndex:
    def __init__(self) -> None:
        self.items: dict[str, list[float]] = {}

    def add(self, name: str, values: list[float]) -> None:
        self.items[name] = values

    def clear(self) -> None:
        self.items.clear()


class StandInEngine:
    def handle(self, env: Envelope, source: Source, state: dict[str, Any] | None, mem: NodeMemory) -> Handled:
        st = state or {"stm": [], "time": 0}
        stm = [list(e) for e in st["stm"]]
        t = st["time"]
        learned: list[LearnEvent] = []
        cleared = None
        if env.op == "observe":
            strings = env.payload.get("strings", [])
            if not isinstance(strings, list) or not all(isinstance(x, str) for x in strings):
                raise KatoError("strings must be a list of strings", code="OBSERVATION_INVALID")
            if strings:
                stm.append(sorted(strings))
                t += 1
        elif env.op == "learn":
            if len(stm) < 2:
                raise KatoError("Cannot learn from empty STM", code="EMPTY_STM")
            events = tuple(tuple(e) for e in stm)
            name = hashlib.sha1(repr(events).encode()).hexdigest()
            ev = LearnEvent(node_id=env.node_id, learn_id=env.msg_id or f"{source.topic}:{source.partition}:{source.offset}", name=name, events=events)
            mem.kb.apply_learn(ev)
            learned.append(ev)
            stm = []
        elif env.op == "clear_stm":
            stm = []
        elif env.op == "clear_all":
            cleared = env.msg_id or f"{source.topic}:{source.partition}:{source.offset}"
            mem.kb.clear(cleared)
            mem.vectors.clear()
            stm = []
        new = None if env.op == "close" else {"stm": stm, "time": t}
        syms = {s for e in stm for s in e}
        preds = [
            {"name": "PTRN|" + n, "frequency": r.frequency}
            for n, r in sorted(mem.kb.patterns.items())
            if syms & set(r.flat)
        ]
        return Handled(
            state=new,
            stm_length=len(stm),
            time=t,
            response={"status": "okay", "session_id": env.session_id},
            predictions=preds,
            future_potentials=[],
            learned=learned,
            cleared=cleared,
            recall_threshold=0.1,
        )

    def summary(self, state: dict[str, Any] | None) -> tuple[int, int]:
        return (len(state["stm"]), state["time"]) if state else (0, 0)
