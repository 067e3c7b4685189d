"""The envelope contract (contracts §2): what is accepted, and the error code of each rejection."""

from __future__ import annotations

import jsonschema
import orjson
import pytest

from kato_stream.settings import Settings
from kato_stream.stream.engine_adapter import CoreEngineAdapter
from kato_stream.stream.envelope import (
    _FIELDS,
    MAX_ID,
    MAX_KEY,
    MAX_ORIGIN,
    EnvelopeError,
    parse_envelope,
)
from kato_stream.stream.ltm import LtmRegistry
from kato_stream.stream.processor import Processor, Source
from kato_stream.topics import load_schema, validate


def _raw(**doc: object) -> bytes:
    return orjson.dumps(doc)


def test_valid_envelope_with_and_without_optional_fields() -> None:
    env = parse_envelope(
        _raw(op="observe", session_id="s", node_id="n", payload={"strings": ["a"]}),
        b"s",
        max_bytes=1000,
    )
    assert (env.op, env.session_id, env.node_id, env.msg_id, env.origin) == (
        "observe",
        "s",
        "n",
        None,
        None,
    )
    assert env.payload == {"strings": ["a"]}
    env = parse_envelope(
        _raw(op="learn", session_id="s", node_id="n", msg_id="m", origin="t:1:2", payload=None),
        b"s",
        max_bytes=1000,
    )
    assert (env.msg_id, env.origin, env.payload) == ("m", "t:1:2", {})


@pytest.mark.parametrize(
    ("raw", "key", "code"),
    [
        (b"", None, "EMPTY"),
        (b"x" * 6000, None, "OVERSIZED"),
        (b"{nope", None, "MALFORMED_JSON"),
        (b"[1]", None, "NOT_AN_OBJECT"),
        (_raw(session_id="s", node_id="n"), None, "MISSING_FIELD"),
        (_raw(op=1, session_id="s", node_id="n"), None, "WRONG_TYPE"),
        (_raw(op="observe", session_id="", node_id="n"), None, "WRONG_TYPE"),
        (_raw(op="observe", session_id="s", node_id="n", extra=1), None, "UNKNOWN_FIELD"),
        (_raw(op="observe", session_id="s", node_id="n", msg_id=5), None, "WRONG_TYPE"),
        (_raw(op="observe", session_id="s", node_id="n", origin=""), None, "WRONG_TYPE"),
        (_raw(op="observe", session_id="s", node_id="n", origin=7), None, "WRONG_TYPE"),
        (
            _raw(op="observe", session_id="s", node_id="n", origin="o" * (MAX_ORIGIN + 1)),
            None,
            "WRONG_TYPE",
        ),
        (_raw(op="observe", session_id="s", node_id="n", payload=[1]), None, "WRONG_TYPE"),
        (_raw(op="fly", session_id="s", node_id="n"), None, "UNKNOWN_OP"),
        (_raw(op="observe", session_id="s", node_id="n"), b"other", "KEY_MISMATCH"),
        (_raw(op="observe", session_id="s", node_id="n"), None, "KEY_MISMATCH"),
        (_raw(op="observe", session_id="s", node_id="n"), b"s" * (MAX_KEY + 1), "OVERSIZED"),
        (_raw(op="observe", session_id="s" * (MAX_ID + 1), node_id="n"), None, "OVERSIZED"),
        (_raw(op="observe", session_id="s", node_id="n" * (MAX_ID + 1)), b"s", "OVERSIZED"),
        (
            _raw(op="observe", session_id="s", node_id="n", msg_id="m" * (MAX_ID + 1)),
            b"s",
            "OVERSIZED",
        ),
    ],
)
def test_rejections_name_their_cause(raw: bytes, key: bytes | None, code: str) -> None:
    with pytest.raises(EnvelopeError) as exc:
        parse_envelope(raw, key, max_bytes=5000)
    assert exc.value.code == code
    assert exc.value.message


def _learn_ids(values: list[tuple[bytes, Source]]) -> list[str]:
    """Learn ids of the commands, with the session's id window off (the LTM's learn ids
    alone keep a replayed learn from counting twice)."""
    ltm = LtmRegistry()
    proc = Processor(CoreEngineAdapter.from_settings(Settings()), ltm, max_bytes=100_000)
    assert proc.idempotency_window == 0
    table: dict[str, object] = {}
    ids = []
    for value, src in values:
        out = proc.process(b"s", value, src, table.get)
        assert out.record is not None and out.record["status"] == "ok", out.record
        if out.table_value is not None:
            table["s"] = out.table_value
        ids += [orjson.loads(ev)["learn_id"] for _node, ev in out.pattern_events]
    return ids


def test_origin_stands_in_for_the_source_in_learn_ids() -> None:
    """A replayed id-less learn carries its original's coordinates as ``origin``: its learn id
    is the original's, so replaying into the node that learned it counts nothing twice."""
    obs = _raw(op="observe", session_id="s", node_id="n", payload={"strings": ["a", "b"]})
    learn = _raw(op="learn", session_id="s", node_id="n")
    replayed = _raw(op="learn", session_id="s", node_id="n", origin="obs:0:1")
    ids = _learn_ids(
        [
            (obs, Source("obs", 0, 0)),
            (learn, Source("obs", 0, 1)),
            (obs, Source("obs", 0, 7)),
            (replayed, Source("obs", 0, 8)),
        ]
    )
    assert ids == ["obs:0:1", "obs:0:1"]
    plain = _learn_ids(
        [(obs, Source("obs", 0, 0)), (learn, Source("obs", 0, 1)), (obs, Source("obs", 0, 7))]
        + [(learn, Source("obs", 0, 8))]
    )
    assert plain == ["obs:0:1", "obs:0:8"]


def test_command_schema_matches_the_parser() -> None:
    """topics/schemas/command.schema.json describes exactly the fields the worker accepts."""
    assert set(load_schema("command")["properties"]) == _FIELDS
    validate(
        "command",
        {"op": "learn", "session_id": "s", "node_id": "n", "origin": "t:0:1", "payload": {}},
    )
    with pytest.raises(jsonschema.ValidationError):
        validate("command", {"op": "learn", "session_id": "s", "node_id": "n", "origin": ""})
