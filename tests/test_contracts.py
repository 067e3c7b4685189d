"""The typed contracts (kato_stream/contracts.py) and their JSON Schemas (topics/schemas/)
describe the same records: a field added to one and not the other fails here."""

from __future__ import annotations

from typing import Any

from kato_stream.contracts import ClearEvent, DeadLetter, LearnEvent, OutputRecord
from kato_stream.topics import load_schema


def _keys(td: Any) -> tuple[set[str], set[str]]:
    return set(td.__required_keys__) | set(td.__optional_keys__), set(td.__required_keys__)


def test_output_record_matches_its_schema() -> None:
    schema = load_schema("prediction")
    keys, required = _keys(OutputRecord)
    assert keys == set(schema["properties"])
    assert required == set(schema["required"])


def test_dead_letter_matches_its_schema() -> None:
    schema = load_schema("dead_letter")
    keys, required = _keys(DeadLetter)
    assert keys == set(schema["properties"])
    assert set(schema["required"]) <= required


def test_pattern_events_match_their_schema() -> None:
    schema = load_schema("pattern_event")
    variants = {tuple(sorted(v["properties"])) for v in schema["oneOf"] + schema.get("anyOf", [])}
    assert variants == {tuple(sorted(_keys(LearnEvent)[0])), tuple(sorted(_keys(ClearEvent)[0]))}


def test_what_the_processor_builds_is_what_the_schema_accepts() -> None:
    """A record, a dead letter and a learn event as the worker builds them validate."""
    import orjson

    from kato_stream.settings import Settings
    from kato_stream.stream.engine_adapter import CoreEngineAdapter
    from kato_stream.stream.ltm import LtmRegistry
    from kato_stream.stream.processor import Processor, Source
    from kato_stream.topics import validate

    s = Settings()
    proc = Processor.from_settings(CoreEngineAdapter.from_settings(s), LtmRegistry(), s)
    table: dict[str, Any] = {}
    docs = [
        {"op": "observe", "session_id": "s", "node_id": "n", "payload": {"strings": ["a"]}},
        {"op": "observe", "session_id": "s", "node_id": "n", "payload": {"strings": ["b"]}},
        {"op": "learn", "session_id": "s", "node_id": "n", "payload": {}},
    ]
    outs = []
    for i, d in enumerate(docs):
        out = proc.process(b"s", orjson.dumps(d), Source("in", 0, i), table.get)
        if out.table_value is not None and out.session_id:
            table[out.session_id] = out.table_value
        outs.append(out)
    bad = proc.process(b"s", b"{not json", Source("in", 0, 9), table.get)
    for out in [*outs, bad]:
        validate("prediction", out.record)
    assert bad.dead_letter is not None
    validate("dead_letter", bad.dead_letter)
    ((_node, raw),) = outs[-1].pattern_events
    validate("pattern_event", orjson.loads(raw))
