"""Rebuild KATO's knowledge base from a conformance recording, step by step.

Used by the predictor-level parity test: every ``predictions`` step is paired with the
KB and STM KATO had at that moment, reconstructed with KATO's own quirks (process-level
persistence 5, accumulators that survive learns, auto-learn without emotives), so the
recorded predictions can be compared with ``predict()`` directly.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kato_stream.core.knowledge import KnowledgeBase, LearnEvent

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance_data" / "kato-3.10.1"


def pattern_name(events: list[list[str]]) -> str:
    return hashlib.sha1(str(events).encode()).hexdigest()


def collapse_metadata(dicts: list[dict[str, Any]]) -> dict[str, list[str]]:
    acc: dict[str, set[str]] = {}
    for d in dicts:
        for k, v in d.items():
            acc.setdefault(k, set()).add(str(v))
    return {k: sorted(v) for k, v in acc.items()}


@dataclass
class Session:
    stm: list[list[str]] = field(default_factory=list)
    emotives: list[dict[str, float]] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class PredictionStep:
    scenario: str
    index: int
    kb: KnowledgeBase
    stm: list[list[str]]
    config: dict[str, Any]
    response: dict[str, Any]


class Unsupported(Exception):
    pass


def replay(path: Path) -> Iterator[PredictionStep]:
    data = json.loads(path.read_text())
    kb = KnowledgeBase("n")
    sessions: dict[str, Session] = {}
    counter = 0

    def learn(sess: Session, events: list[list[str]], with_accumulators: bool) -> str:
        nonlocal counter
        if sum(len(e) for e in events) < 2:
            return ""
        counter += 1
        name = pattern_name(events)
        kb.apply_learn(
            LearnEvent(
                node_id="n",
                learn_id=f"l{counter}",
                name=name,
                events=tuple(tuple(e) for e in events),
                emotives=tuple(sess.emotives) if with_accumulators else (),
                metadata=collapse_metadata(sess.metadata) if with_accumulators else {},
                persistence=5,
            )
        )
        return name

    for step in data["steps"]:
        op = step["op"]
        req = step["request"]
        resp = step["response"]
        sid = req["path"].split("/")[2] if req["path"].startswith("/sessions/") else None
        if op == "create_session":
            cfg = (req.get("body") or {}).get("config") or {}
            sessions[resp["session_id"]] = Session(config=dict(cfg))
            continue
        if step["status"] != 200 or sid is None or sid not in sessions:
            continue
        sess = sessions[sid]
        if op == "observe":
            body = req["body"] or {}
            if body.get("vectors"):
                raise Unsupported("vectors")
            ev = sorted(body.get("strings", []))
            if ev:
                sess.stm.append(ev)
            mpl = sess.config.get("max_pattern_length") or 0
            if ev and mpl > 0 and len(sess.stm) >= mpl:
                if len(sess.stm) == 1:
                    learn(sess, sess.stm, False)
                    sess.stm = []
                elif (sess.config.get("stm_mode") or "CLEAR") == "ROLLING":
                    w = mpl - 1
                    keep = sess.stm[-w:] if len(sess.stm) > w else sess.stm[1:]
                    learn(sess, sess.stm, False)
                    sess.stm = keep
                else:
                    learn(sess, sess.stm, False)
                    sess.stm = []
            if body.get("emotives"):
                sess.emotives.append({k: float(v) for k, v in body["emotives"].items()})
            if body.get("metadata"):
                sess.metadata.append(body["metadata"])
            assert resp["stm_length"] == len(sess.stm), (path.name, step["i"])
        elif op == "learn":
            name = learn(sess, sess.stm, True)
            sess.stm = []
            assert resp["pattern_name"] == ("PTRN|" + name if name else ""), (path.name, step["i"])
        elif op == "clear_stm":
            sess.stm, sess.emotives, sess.metadata = [], [], []
        elif op == "clear_all":
            counter += 1
            kb.clear(f"c{counter}")
            sess.stm, sess.emotives, sess.metadata = [], [], []
        elif op == "update_config":
            body = req["body"] or {}
            sess.config.update(body.get("config", body))
        elif op == "observe_sequence":
            raise Unsupported("observe_sequence")
        elif op == "predictions":
            yield PredictionStep(
                path.name,
                step["i"],
                copy.deepcopy(kb),
                copy.deepcopy(sess.stm),
                dict(sess.config),
                resp,
            )
