"""codecs.dumps_sharing: an output record and the session's lists encoded once, same bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kato_stream.stream import codecs


def _predictions() -> list[dict[str, Any]]:
    return [
        {"name": f"p{i}", "potential": 0.1 + 0.2 * i, "future": [["b", "a"]], "z": None, "a": {}}
        for i in range(5)
    ]


def test_shared_lists_are_spliced_and_the_bytes_do_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    preds, fps = _predictions(), [{"future": [["c"]], "aggregate_potential": 1 / 3}]
    record = {"op": "observe", "predictions": preds, "future_potentials": fps, "stm_length": 2}
    # the session keeps its own list objects holding the same prediction dicts (to_dict)
    lists = {"predictions": list(preds), "future_potentials": list(fps)}
    seen: list[Any] = []
    real = codecs.dumps
    monkeypatch.setattr(codecs, "dumps", lambda v: seen.append(v) or real(v))
    out, encoded = codecs.dumps_sharing(record, lists)
    assert out == real(record)
    assert encoded == {"predictions": real(preds), "future_potentials": real(fps)}
    # each list serialised once: the record's copy was the list's bytes as a Fragment
    top = seen[-1]
    assert isinstance(top["predictions"], orjson.Fragment)
    assert isinstance(top["future_potentials"], orjson.Fragment)
    assert record["predictions"] is preds  # the record itself is left as it was


def test_lists_that_differ_from_the_record_are_encoded_apart() -> None:
    preds = _predictions()
    equal_not_same = [dict(p) for p in preds]
    record = {"predictions": preds, "future_potentials": []}
    for lists in (
        {"predictions": equal_not_same},  # equal values, other objects: not trusted
        {"predictions": preds[:3]},  # another length
        {"future_potentials": [{"future": [["x"]]}]},  # another list
    ):
        out, encoded = codecs.dumps_sharing(record, lists)
        assert out == codecs.dumps(record)
        assert encoded == {n: codecs.dumps(v) for n, v in lists.items()}


def test_records_without_lists() -> None:
    assert codecs.dumps_sharing(None, {}) == (b"null", {})
    rec = {"status": "rejected", "error": {"code": "BAD_JSON"}}
    assert codecs.dumps_sharing(rec, {}) == (codecs.dumps(rec), {})
    assert codecs.dumps_sharing(rec, {"predictions": []}) == (
        codecs.dumps(rec),
        {"predictions": b"[]"},
    )
