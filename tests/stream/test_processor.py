"""The Processor's edges, in process: limits that keep every output within the broker's size,
and idempotency by command id (contracts §2).

Each outcome is checked the way the worker uses it: the records it would send are encoded
and measured against the limit, and the session's table value decides what later commands
see."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.engine_adapter import CoreEngineAdapter
from kato_stream.stream.envelope import MAX_ID
from kato_stream.stream.ltm import LtmRegistry
from kato_stream.stream.processor import Outcome, Processor, Source

LIMIT = 100_000


class Session:
    """A processor and a session table, fed one record at a time like the agent feeds them."""

    def __init__(self, window: int = 50, limit: int = LIMIT) -> None:
        s = Settings(max_output_bytes=limit, idempotency_window=window)
        self.proc = Processor.from_settings(CoreEngineAdapter.from_settings(s), LtmRegistry(), s)
        self.table: dict[str, Any] = {}
        self.offset = 0

    def send(self, value: bytes | None, key: bytes | None = b"s") -> Outcome:
        out = self.proc.process(key, value, Source("in", 0, self.offset), self.table.get)
        self.offset += 1
        assert not out.duplicate and out.record is not None
        if out.table_value is not None and out.session_id is not None:
            self.table[out.session_id] = out.table_value
        for _node, ev in out.pattern_events:  # as the worker's follower would apply it
            self.proc.ltm.apply_event(orjson.loads(ev))
        return out

    def cmd(self, op: str, payload: dict[str, Any] | None = None, **kw: Any) -> Outcome:
        doc = {"op": op, "session_id": "s", "node_id": "n", "payload": payload or {}, **kw}
        return self.send(orjson.dumps(doc))

    def stm(self) -> list[list[str]]:
        return list(self.table["s"]["state"]["stm"])


def sizes(out: Outcome) -> list[int]:
    """Sizes of every record the outcome sends: output, pattern events, dead letter, table."""
    got = [len(codecs.dumps(out.record)) + len(out.key or b"")]
    got += [len(raw) + len(node.encode()) for node, raw in out.pattern_events]
    if out.dead_letter is not None:
        got.append(len(codecs.dumps(out.dead_letter)) + len(out.key or b""))
    if out.table_value is not None and out.session_id:
        got.append(len(codecs.dumps(out.table_value)) + len(out.session_id))
    return got


# -- size limits ------------------------------------------------------------------------


def test_an_oversized_non_json_record_gets_a_bounded_dead_letter() -> None:
    s = Session(limit=LIMIT)
    s.cmd("observe", {"strings": ["v0"]}, msg_id="m0")
    raw = b"\xff" * 90_000  # fits the envelope limit, its base64 would not fit the output
    out = s.send(raw)
    assert out.record is not None and out.record["status"] == "rejected"
    assert out.record["error"]["code"] == "MALFORMED_JSON"
    dead = out.dead_letter
    assert dead is not None and dead["value_truncated"] is True
    assert dead["value_size"] == len(raw)
    assert dead["value_sha256"] == hashlib.sha256(raw).hexdigest()
    assert raw.startswith(base64.b64decode(dead["value_b64"]))
    assert max(sizes(out)) <= LIMIT
    # the session goes on where it was
    assert s.cmd("observe", {"strings": ["v2"]}, msg_id="m2").record["stm_length"] == 2
    assert s.stm() == [["v0"], ["v2"]]


def test_a_small_rejected_record_keeps_its_whole_bytes() -> None:
    out = Session().send(b"not json")
    assert out.dead_letter is not None
    assert base64.b64decode(out.dead_letter["value_b64"]) == b"not json"
    assert "value_truncated" not in out.dead_letter


def test_a_learn_whose_pattern_event_cannot_fit_is_rejected_and_changes_nothing() -> None:
    s = Session(limit=LIMIT)
    s.cmd("observe", {"strings": ["a"]}, msg_id="a")
    before = s.table["s"]["state"]
    # the stored STM never holds all three (the learn at the end empties it), but their
    # pattern is a 120 KB record
    big = [{"strings": [ch * 40_000]} for ch in "xyz"]
    out = s.cmd("observe_sequence", {"observations": big, "learn_at_end": True}, msg_id="q")
    assert out.record["status"] == "rejected"
    assert out.record["error"]["code"] == "PATTERN_TOO_LARGE"
    assert out.record["error"]["details"]["limit"] == LIMIT
    assert out.pattern_events == [] and s.proc.ltm.node("n").kb.patterns == {}
    assert s.table["s"]["state"] == before
    assert max(sizes(out)) <= LIMIT
    small = [{"strings": [ch]} for ch in "xyz"]  # the session goes on
    seq = {"observations": small, "learn_at_end": True}
    assert s.cmd("observe_sequence", seq, msg_id="q2").pattern_events


def test_an_observation_whose_state_cannot_fit_is_rejected_and_changes_nothing() -> None:
    s = Session(limit=LIMIT)
    s.cmd("observe", {"strings": ["a"]}, msg_id="a")
    out = s.cmd("observe", {"strings": ["z" * (LIMIT + 10)]}, msg_id="big")
    assert out.record["status"] == "rejected"
    assert out.record["error"]["code"] == "STATE_TOO_LARGE"
    assert s.stm() == [["a"]]
    assert max(sizes(out)) <= LIMIT
    assert s.cmd("observe", {"strings": ["b"]}, msg_id="b").record["stm_length"] == 2


def test_an_oversized_key_is_rejected_with_a_digest_key() -> None:
    out = Session().send(b'{"op":"observe"}', key=b"k" * 10_000)
    assert out.record["error"]["code"] == "OVERSIZED"
    assert out.key is not None and out.key.startswith(b"sha256:") and len(out.key) < 100
    assert out.dead_letter is not None and out.dead_letter["key_truncated"] is True


def test_a_null_key_is_rejected_and_the_session_order_kept() -> None:
    s = Session()
    s.cmd("observe", {"strings": ["a"]}, msg_id="a")
    doc = {"op": "observe", "session_id": "s", "node_id": "n", "payload": {"strings": ["b"]}}
    out = s.send(orjson.dumps(doc), key=None)
    assert out.record["status"] == "rejected" and out.record["error"]["code"] == "KEY_MISMATCH"
    assert out.key == b"s"  # answered on the session's own key
    s.cmd("observe", {"strings": ["c"]}, msg_id="c")
    assert s.stm() == [["a"], ["c"]]


def test_an_error_that_quotes_a_huge_input_is_cut_to_size() -> None:
    s = Session(limit=LIMIT)
    out = s.cmd("observe", {"strings": "q" * 80_000})  # not a list: OBSERVATION_INVALID
    assert out.record["status"] == "rejected"
    assert max(sizes(out)) <= LIMIT


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.binary(max_size=200),
        st.builds(lambda n: b"\x00" * n, st.integers(0, 99_000)),
        st.builds(
            lambda op, sym, n, mid: orjson.dumps(
                {
                    "op": op,
                    "session_id": "s",
                    "node_id": "n",
                    "msg_id": mid,
                    "payload": {"strings": [sym * n]},
                }
            ),
            st.sampled_from(["observe", "learn", "get", "clear_stm", "fly"]),
            st.sampled_from(["a", "é", "\u4e2d"]),
            st.integers(0, 40_000),
            st.one_of(st.none(), st.text(max_size=5), st.just("m" * (MAX_ID + 1))),
        ),
    ),
    key=st.one_of(st.none(), st.just(b"s"), st.binary(max_size=8)),
)
def test_every_input_gets_one_output_and_every_record_fits(value: bytes, key: bytes | None) -> None:
    s = Session(limit=LIMIT)
    s.cmd("observe", {"strings": ["w" * 30_000]}, msg_id="pre")
    out = s.send(value, key=key)
    assert out.record is not None and out.record["status"] in {"ok", "rejected", "duplicate"}
    assert max(sizes(out)) <= LIMIT


# -- idempotency by command id ----------------------------------------------------------


def test_a_republished_observe_changes_nothing_and_is_answered_duplicate() -> None:
    s = Session()
    first = s.cmd("observe", {"strings": ["a"]}, msg_id="m1")
    again = s.cmd("observe", {"strings": ["a"]}, msg_id="m1")
    assert first.record["status"] == "ok"
    assert again.record["status"] == "duplicate"
    assert again.record["error"]["code"] == "DUPLICATE"
    assert again.record["stm_length"] == 1 and again.record["msg_id"] == "m1"
    assert again.dead_letter is None and again.pattern_events == []
    assert s.stm() == [["a"]]


def test_every_op_is_idempotent_by_msg_id() -> None:
    s = Session()
    script = [
        ("observe", {"strings": ["a"]}, "1"),
        ("observe", {"strings": ["b"]}, "2"),
        ("learn", {}, "3"),
        ("observe", {"strings": ["c"]}, "4"),
        ("configure", {"config": {"max_predictions": 3}}, "5"),
        ("clear_stm", {}, "6"),
        ("observe_sequence", {"observations": [{"strings": ["d"]}, {"strings": ["e"]}]}, "7"),
    ]
    firsts = [s.cmd(op, p, msg_id=m).record for op, p, m in script]
    state = s.table["s"]["state"]
    kb = dict(s.proc.ltm.node("n").kb.patterns)
    for op, p, m in script:  # a producer retrying all of them
        assert s.cmd(op, p, msg_id=m).record["status"] == "duplicate"
    assert all(r["status"] == "ok" for r in firsts)
    assert s.table["s"]["state"] == state
    assert dict(s.proc.ltm.node("n").kb.patterns) == kb


def test_a_replayed_id_less_command_is_recognised_by_its_origin() -> None:
    s = Session()
    s.cmd("observe", {"strings": ["a"]})  # no msg_id: its identity is in:0:0
    out = s.cmd("observe", {"strings": ["a"]}, origin="in:0:0")
    assert out.record["status"] == "duplicate"
    assert s.stm() == [["a"]]


def test_a_rejected_command_may_be_sent_again_with_its_id() -> None:
    s = Session()
    bad = s.cmd("observe", {"strings": "nope"}, msg_id="m")
    good = s.cmd("observe", {"strings": ["a"]}, msg_id="m")
    assert bad.record["status"] == "rejected" and good.record["status"] == "ok"


def test_the_window_is_bounded_and_forgets_the_oldest_ids() -> None:
    s = Session(window=3)
    for i in range(5):
        s.cmd("observe", {"strings": [f"x{i}"]}, msg_id=f"m{i}")
    assert len(s.table["s"]["ids"]) == 3
    assert s.cmd("observe", {"strings": ["x4"]}, msg_id="m4").record["status"] == "duplicate"
    assert s.cmd("observe", {"strings": ["x0"]}, msg_id="m0").record["status"] == "ok"


def test_window_zero_keeps_only_the_offset_rule() -> None:
    s = Session(window=0)
    s.cmd("observe", {"strings": ["a"]}, msg_id="m")
    assert s.cmd("observe", {"strings": ["a"]}, msg_id="m").record["status"] == "ok"
    assert "ids" not in s.table["s"]
