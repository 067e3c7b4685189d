"""Node chains (forward_to) and unravel, in process: the processor's forwards fed back in as
the input topic would deliver them (docs/hierarchy.md).

The spec of the issue, first: level 0 with ``max_pattern_length: 3, forward_to: L1`` and its
level session opened with ``max_pattern_length: 2``: six tokens make level 0 learn two
patterns, and level 1 one pattern whose two events are those two names."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kato_stream.core.hierarchy import UnravelError, unravel
from kato_stream.settings import Settings
from kato_stream.stream.engine_adapter import CoreEngineAdapter
from kato_stream.stream.envelope import parse_envelope
from kato_stream.stream.ltm import LtmRegistry
from kato_stream.stream.processor import Outcome, Processor, Source, forward_id


class Chain:
    """One processor, one table, an input log; forwards are appended to the log and
    processed in order, like the worker with its input topic."""

    def __init__(self) -> None:
        s = Settings(idempotency_window=100)
        self.proc = Processor.from_settings(CoreEngineAdapter.from_settings(s), LtmRegistry(), s)
        self.table: dict[str, Any] = {}
        self.log: list[tuple[bytes, bytes]] = []
        self.done = 0
        self.outputs: list[dict[str, Any]] = []

    def publish(self, op: str, sid: str, node: str, payload: Any = None, **kw: Any) -> None:
        doc = {"op": op, "session_id": sid, "node_id": node, "payload": payload or {}, **kw}
        self.log.append((sid.encode(), orjson.dumps(doc)))

    def run(self, write_table: bool = True) -> list[Outcome]:
        outs = []
        while self.done < len(self.log):
            key, value = self.log[self.done]
            out = self.step(key, value, self.done, write_table)
            self.done += 1
            outs.append(out)
        return outs

    def step(self, key: bytes, value: bytes, offset: int, write_table: bool = True) -> Outcome:
        out = self.proc.process(key, value, Source("in", 0, offset), self.table.get)
        assert not out.needs
        if out.record is not None:
            self.outputs.append(out.record)
        if write_table and out.table_value is not None and out.session_id is not None:
            self.table[out.session_id] = out.table_value
        for _node, ev in out.pattern_events:
            self.proc.ltm.apply_event(orjson.loads(ev))
        for fw in out.forwards:
            self.log.append((fw.key, fw.value))
        return out

    def patterns(self, node: str) -> dict[str, tuple[list[list[str]], int]]:
        kb = self.proc.ltm.node(node).kb
        return {n: ([list(e) for e in r.events], r.frequency) for n, r in kb.patterns.items()}


def two_levels(c: Chain) -> None:
    c.publish("open", "s", "L0", {"config": {"max_pattern_length": 3, "forward_to": "L1"}})
    c.publish("open", "s/L1", "L1", {"config": {"max_pattern_length": 2}})
    for tok in ["the", "cat", "sat", "on", "the", "mat"]:
        c.publish("observe", "s", "L0", {"strings": [tok]})


def test_six_tokens_make_two_patterns_at_level_0_and_one_of_their_names_at_level_1() -> None:
    c = Chain()
    two_levels(c)
    c.run()
    l0, l1 = c.patterns("L0"), c.patterns("L1")
    assert sorted(events for events, _ in l0.values()) == [
        [["on"], ["the"], ["mat"]],
        [["the"], ["cat"], ["sat"]],
    ]
    learned0 = [r["learned_patterns"] for r in c.outputs if r["node_id"] == "L0"]
    names = [n for ls in learned0 for n in ls]
    assert len(names) == 2
    assert list(l1.values()) == [([[names[0]], [names[1]]], 1)]  # in the order learned
    # the forwards are ordinary observes of the level session, answered on the output
    ups = [r for r in c.outputs if r["session_id"] == "s/L1" and r["op"] == "observe"]
    assert [r["status"] for r in ups] == ["ok", "ok"]
    assert ups[-1]["learned_patterns"] == ["PTRN|" + next(iter(l1))]


def test_three_levels_and_the_way_down() -> None:
    c = Chain()
    c.publish("open", "s", "L0", {"config": {"max_pattern_length": 2, "forward_to": "L1"}})
    c.publish("open", "s/L1", "L1", {"config": {"max_pattern_length": 2, "forward_to": "L2"}})
    c.publish("open", "s/L1/L2", "L2", {"config": {"max_pattern_length": 2}})
    tokens = [f"t{i}" for i in range(8)]
    for tok in tokens:
        c.publish("observe", "s", "L0", {"strings": [tok]})
    c.run()
    (top,) = c.patterns("L2")
    kb = {n: c.proc.ltm.node(n).kb for n in ("L0", "L1", "L2")}
    assert unravel(kb.__getitem__, top, ["L2", "L1", "L0"]) == [[t] for t in tokens]
    # the op, as a stream command on any session
    c.publish("unravel", "reader", "L2", {"pattern": "PTRN|" + top, "down": ["L1", "L0"]})
    (out,) = c.run()
    assert out.record is not None and out.record["status"] == "ok"
    assert out.record["response"] == {
        "pattern": "PTRN|" + top,
        "nodes": ["L2", "L1", "L0"],
        "events": [[t] for t in tokens],
    }
    assert out.table_value is None  # a read: the session is untouched


def test_unravel_errors_are_rejections_naming_the_cause() -> None:
    c = Chain()
    two_levels(c)
    c.run()
    (l1,) = c.patterns("L1")
    cases = [
        ({"pattern": "PTRN|nope", "down": ["L0"]}, "not known to node 'L1'"),
        ({"pattern": "PTRN|" + l1, "down": ["L9"]}, "not known to node 'L9'"),
        ({"pattern": "PTRN|" + l1, "down": "L0"}, "payload.down"),
        ({"down": ["L0"]}, "payload.pattern"),
    ]
    for payload, message in cases:
        c.publish("unravel", "reader", "L1", payload)
        (out,) = c.run()
        assert out.record is not None and out.record["status"] == "rejected"
        assert message in out.record["error"]["message"]
    (l0_name, *_) = c.patterns("L0")
    c.publish("unravel", "reader", "L0", {"pattern": l0_name, "down": ["L1"]})
    (out,) = c.run()  # level 0 holds no pattern names: L0 is not above L1
    assert "not a pattern name" in out.record["error"]["message"]  # type: ignore[index]
    with pytest.raises(UnravelError):
        unravel(lambda n: c.proc.ltm.node(n).kb, l0_name, [])


def test_a_learning_command_redone_after_a_crash_forwards_nothing_twice() -> None:
    """The crash point that matters: forwards sent, the table value never written.  The
    command is redone, sends the same forwards (same msg_id), and the level session answers
    them ``duplicate``."""
    c = Chain()
    two_levels(c)
    c.run()
    before = c.patterns("L1")
    # the last observe (it learned) redone as after a crash before its table write: its
    # table value is rolled back to what it was before, and the command processed again
    sid_value = dict(c.table["s"])
    c.publish("observe", "s", "L0", {"strings": ["x"]}, msg_id="m1")
    c.publish("observe", "s", "L0", {"strings": ["y"]}, msg_id="m2")
    c.publish("observe", "s", "L0", {"strings": ["z"]}, msg_id="m3")  # learns, forwards
    c.run()
    forwarded = [r for r in c.outputs if r["session_id"] == "s/L1"]
    n = len(forwarded)
    c.table["s"] = sid_value
    # replay the three commands at their own offsets, as a redelivery from the last commit
    start = len(c.log) - 1 - 3  # the three observes, then the forward they caused
    for off in range(start, start + 3):
        key, value = c.log[off]
        c.step(key, value, off)
    c.run()
    again = [r for r in c.outputs if r["session_id"] == "s/L1"][n:]
    assert [r["status"] for r in again] == ["duplicate"]
    assert again[0]["msg_id"] == forwarded[-1]["msg_id"]
    after = c.patterns("L1")
    assert {k: v for k, v in after.items() if k in before} == before


def test_forward_ids_follow_the_commands_identity() -> None:
    env = parse_envelope(
        orjson.dumps({"op": "learn", "session_id": "s", "node_id": "L0", "msg_id": "a"}),
        b"s",
        max_bytes=10_000,
    )
    src = Source("in", 0, 7)
    assert forward_id(env, src, 0) == forward_id(env, Source("in", 3, 99), 0)  # by msg_id
    assert forward_id(env, src, 0) != forward_id(env, src, 1)
    anon = parse_envelope(
        orjson.dumps({"op": "learn", "session_id": "s", "node_id": "L0"}), b"s", max_bytes=10_000
    )
    assert forward_id(anon, src, 0) == forward_id(anon, Source("in", 0, 7), 0)  # coordinates
    assert forward_id(anon, src, 0) != forward_id(anon, Source("in", 0, 8), 0)


def test_a_session_without_forward_to_forwards_nothing() -> None:
    c = Chain()
    c.publish("open", "s", "L0", {"config": {"max_pattern_length": 2}})
    for tok in "abcd":
        c.publish("observe", "s", "L0", {"strings": [tok]})
    outs = c.run()
    assert all(not o.forwards for o in outs)
    assert len(c.patterns("L0")) == 2
    c.publish("configure", "s", "L0", {"config": {"forward_to": "L1"}})
    for tok in "ef":
        c.publish("observe", "s", "L0", {"strings": [tok]})
    c.run()
    name = [n for r in c.outputs for n in r["learned_patterns"]][-1]
    # the level session was never opened: created on its first observe, with the defaults
    # (max_pattern_length 0: it learns nothing by itself), holding the name in its STM
    assert c.patterns("L1") == {}
    assert c.table["s/L1"]["state"]["stm"] == [[name]]
