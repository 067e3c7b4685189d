"""Session expiry by record timestamps (kato_stream/stream/expiry.py), in process.

The rule, as a user meets it: a session idle (by its commands' record timestamps) for more
than its TTL is expired at its next command, which starts it afresh and says so; every
command slides the TTL; the same records give the same answers whenever they are processed
(a replay hours later included); a worker removes a session only once its partition's
stream time is past the session's deadline plus the grace period."""

from __future__ import annotations

from typing import Any

import orjson

from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.engine_adapter import CoreEngineAdapter
from kato_stream.stream.expiry import TICK_KEY, ExpiryIndex, deadline, expired, is_tick
from kato_stream.stream.ltm import LtmRegistry
from kato_stream.stream.processor import Outcome, Processor, Source
from kato_stream.topics import validate

S = 1000  # ms


class Node:
    """A processor and a session table fed like the agent feeds them, with timestamps."""

    def __init__(self, ttl: int = 3600, expiry: bool = True) -> None:
        s = Settings(session_ttl=ttl, session_expiry=expiry)
        self.proc = Processor.from_settings(CoreEngineAdapter.from_settings(s), LtmRegistry(), s)
        self.table: dict[str, Any] = {}
        self.offset = 0
        self.outputs: list[bytes] = []

    def send(self, ts: int, op: str, payload: dict[str, Any] | None = None, **kw: Any) -> Outcome:
        doc = {"op": op, "session_id": "s", "node_id": "n", "payload": payload or {}, **kw}
        return self.raw(ts, b"s", orjson.dumps(doc))

    def raw(self, ts: int, key: bytes | None, value: bytes | None) -> Outcome:
        src = Source("in", 0, self.offset)
        out = self.proc.process(key, value, src, self.table.get, timestamp_ms=ts)
        self.offset += 1
        if out.table_value is not None and out.session_id is not None:
            self.table[out.session_id] = out.table_value
        if out.record is not None:
            self.outputs.append(codecs.dumps(out.record))
        return out


def test_an_idle_session_is_expired_at_its_next_command_which_starts_afresh() -> None:
    n = Node()
    n.send(0, "open", {"ttl_seconds": 2})
    n.send(1 * S, "observe", {"strings": ["a"]})
    kept = n.send(2 * S, "observe", {"strings": ["b"]})  # 1 s idle: alive
    assert kept.record is not None and "session_expired" not in kept.record
    assert kept.record["stm_length"] == 2
    got = n.send(8 * S, "get")  # 6 s idle with a TTL of 2
    assert got.record is not None
    assert got.record["session_expired"] is True
    assert got.record["status"] == "ok"
    validate("prediction", got.record)  # the contract: topics/schemas/prediction.schema.json
    validate("prediction", kept.record)
    assert got.record["response"]["stm"] == []
    # the fresh session has the default TTL (its own came from the expired open)
    assert n.table["s"]["seen"] == 8 * S


def test_every_command_slides_the_ttl() -> None:
    n = Node()
    n.send(0, "open", {"ttl_seconds": 2})
    for t in range(1, 20):  # a command every 1.5 s for 28 s: never idle 2 s
        out = n.send(int(t * 1.5 * S), "observe", {"strings": [f"x{t}"]})
        assert out.record is not None and "session_expired" not in out.record
    assert n.table["s"]["state"]["ttl_seconds"] == 2


def test_the_default_ttl_applies_to_a_session_without_open() -> None:
    n = Node(ttl=5)
    n.send(0, "observe", {"strings": ["a"]})
    assert "session_expired" not in (n.send(5 * S, "get").record or {})  # exactly the TTL
    assert n.send(10 * S + 1, "get").record["session_expired"] is True  # type: ignore[index]


def test_expiry_off_keeps_sessions_forever() -> None:
    n = Node(ttl=1, expiry=False)
    n.send(0, "observe", {"strings": ["a"]})
    out = n.send(3600 * S, "get")
    assert out.record is not None and "session_expired" not in out.record
    assert out.record["response"]["stm"] == [["a"]]


def test_a_late_record_does_not_expire_and_does_not_move_seen_back() -> None:
    n = Node()
    n.send(10 * S, "open", {"ttl_seconds": 2})
    n.send(5 * S, "observe", {"strings": ["a"]})  # timestamp older than the session's
    assert n.table["s"]["seen"] == 10 * S
    assert n.send(11 * S, "get").record["response"]["stm"] == [["a"]]  # type: ignore[index]


def test_a_rejected_command_does_not_bring_an_expired_session_back() -> None:
    n = Node()
    n.send(0, "open", {"ttl_seconds": 2})
    n.send(0, "observe", {"strings": ["a"]})
    bad = n.send(10 * S, "observe", {"strings": "not a list"})
    assert bad.record is not None and bad.record["status"] == "rejected"
    assert bad.record["session_expired"] is True
    # the rejection wrote nothing: a later command still finds the expired value
    assert n.send(11 * S, "get").record["session_expired"] is True  # type: ignore[index]


def test_a_redelivered_command_is_skipped_even_when_its_session_has_expired_since() -> None:
    n = Node()
    n.send(0, "open", {"ttl_seconds": 2})
    src = Source("in", 0, 0)  # the open's own coordinates, delivered again much later
    doc = {"op": "open", "session_id": "s", "node_id": "n", "payload": {"ttl_seconds": 2}}
    out = n.proc.process(b"s", orjson.dumps(doc), src, n.table.get, timestamp_ms=100 * S)
    assert out.duplicate and out.record is None


def test_the_same_records_give_the_same_outputs_on_a_replay() -> None:
    """Expiry reads record timestamps only: a replay processed at any time answers alike."""
    script = [
        (0, "open", {"ttl_seconds": 3}),
        (1 * S, "observe", {"strings": ["a", "b"]}),
        (2 * S, "learn", {}),
        (9 * S, "observe", {"strings": ["a"]}),  # expired: starts afresh
        (10 * S, "observe", {"strings": ["b"]}),
        (11 * S, "get", {}),
    ]
    runs = []
    for _ in range(2):
        n = Node()
        for ts, op, payload in script:
            n.send(ts, op, payload)
        runs.append(n.outputs)
    assert runs[0] == runs[1]
    assert b'"session_expired":true' in runs[0][3]
    assert sum(b"session_expired" in o for o in runs[0]) == 1


def test_a_tick_is_answered_with_nothing() -> None:
    n = Node()
    out = n.raw(5 * S, TICK_KEY, b"")
    assert out.tick and out.record is None and out.table_value is None
    assert is_tick(TICK_KEY, None) and not is_tick(TICK_KEY, b"{}") and not is_tick(b"s", b"")


def test_rule_functions() -> None:
    value = {"state": {"ttl_seconds": 2}, "seen": 1000}
    assert not expired(value, 3000, 3600)  # idle exactly the TTL
    assert expired(value, 3001, 3600)
    assert not expired({"state": {}}, 10**12, 1)  # written before the rule: no seen
    assert not expired({"state": None, "seen": 0}, 10**12, 1)  # closed: nothing to expire
    assert deadline(value, 3600, 500) == 3500
    assert deadline({"state": {}, "seen": 0}, 7, 0) == 7000  # default TTL
    assert deadline({"state": {}}, 7, 0) is None


def test_index_gives_due_sessions_once_stream_time_passes_their_deadline() -> None:
    ix = ExpiryIndex(default_ttl=10, grace_seconds=1)
    ix.touch(0, "a", {"state": {"ttl_seconds": 2}, "seen": 0})  # deadline 3 s
    ix.touch(0, "b", {"state": {}, "seen": 0})  # deadline 11 s
    ix.advance(0, 3 * S, now=0.0)
    assert ix.due(0) == []  # not past yet
    ix.advance(0, 3 * S + 1, now=0.0)
    assert ix.due(0) == ["a"]
    assert ix.due(0) == []  # handed out once
    ix.touch(0, "b", {"state": {}, "seen": 5 * S})  # a later write: the old entry is stale
    ix.advance(0, 12 * S, now=0.0)
    assert ix.due(0) == []
    ix.advance(0, 17 * S, now=0.0)
    assert ix.due(0) == ["b"]
    assert len(ix) == 0


def test_index_stays_bounded_under_many_writes_of_one_session() -> None:
    ix = ExpiryIndex(default_ttl=10, grace_seconds=0)
    for t in range(10_000):
        ix.touch(0, "a", {"state": {}, "seen": t})
    assert len(ix) == 1
    assert len(ix._parts[0].heap) <= 2 + 64  # stale entries are compacted


def test_index_asks_for_a_tick_only_for_an_idle_partition_with_sessions_due_by_the_clock() -> None:
    ix = ExpiryIndex(default_ttl=10, grace_seconds=0)
    ix.touch(0, "a", {"state": {"ttl_seconds": 2}, "seen": 1_000_000})  # due at 1,002,000 ms
    ix.advance(0, 1_000_000, now=100.0)
    assert not ix.needs_tick(0, now=100.5, now_ms=1_010_000, idle_seconds=1)  # not idle yet
    assert not ix.needs_tick(0, now=200.0, now_ms=1_001_000, idle_seconds=1)  # not due yet
    assert ix.needs_tick(0, now=200.0, now_ms=1_010_000, idle_seconds=1)
    ix.tick_sent(0, now=200.0)
    assert not ix.needs_tick(0, now=201.0, now_ms=1_011_000, idle_seconds=1)  # one in flight
    ix.tick_lost(0, now=300.0, after=50)
    assert ix.needs_tick(0, now=300.0, now_ms=1_011_000, idle_seconds=1)  # lost: again
    ix.advance(0, 1_011_000, now=300.0, tick=True)  # the tick arrived: stream time moved
    assert not ix.needs_tick(0, now=400.0, now_ms=1_020_000, idle_seconds=1)  # sweep's turn
    assert ix.due(0) == ["a"]
    ix.reset(set())
    assert ix.partitions() == []


def test_index_hands_out_due_sessions_in_chunks() -> None:
    """A mass expiry is removed a chunk at a time (the worker yields between chunks)."""
    ix = ExpiryIndex(default_ttl=1, grace_seconds=0)
    for i in range(2500):
        ix.touch(0, f"s{i}", {"state": {}, "seen": i})
    ix.advance(0, 10_000 * S, now=0.0)
    chunks = []
    while True:
        got = ix.due(0, limit=1000)
        if not got:
            break
        chunks.append(len(got))
    assert chunks == [1000, 1000, 500]
    assert len(ix) == 0
