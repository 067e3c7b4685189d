"""Observation acceptance must match KATO's pydantic-lax model (spec §2.1)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kato_stream.core.errors import ObservationError
from kato_stream.core.observation import Observation, parse_observation


def test_empty_object_is_valid() -> None:
    obs = parse_observation({})
    assert obs == Observation()
    assert obs.is_empty


def test_unknown_keys_ignored_and_client_unique_id_ignored() -> None:
    obs = parse_observation({"strings": ["a"], "path": ["x"], "unique_id": "mine"})
    assert obs.strings == ["a"]
    assert obs.unique_id is None
    assert parse_observation({"unique_id": "mine"}, with_unique_id=True).unique_id == "mine"


@pytest.mark.parametrize(
    ("body", "type_", "loc"),
    [
        ({"strings": [1]}, "string_type", ["body", "strings", 0]),
        ({"strings": [None]}, "string_type", ["body", "strings", 0]),
        ({"strings": None}, "list_type", ["body", "strings"]),
        ({"strings": "ab"}, "list_type", ["body", "strings"]),
        ({"vectors": "x"}, "list_type", ["body", "vectors"]),
        ({"vectors": [1]}, "list_type", ["body", "vectors", 0]),
        ({"vectors": [["abc"]]}, "float_parsing", ["body", "vectors", 0, 0]),
        ({"emotives": "x"}, "dict_type", ["body", "emotives"]),
        ({"emotives": {"a": None}}, "float_type", ["body", "emotives", "a"]),
        ({"metadata": None}, "dict_type", ["body", "metadata"]),
    ],
)
def test_rejections_have_fastapi_details(body: dict[str, Any], type_: str, loc: list[Any]) -> None:
    with pytest.raises(ObservationError) as info:
        parse_observation(body)
    err = info.value
    assert err.status == 422
    assert isinstance(err.details, list)
    assert err.details[0]["type"] == type_
    assert err.details[0]["loc"] == loc
    assert set(err.details[0]) == {"type", "loc", "msg", "input"}


def test_all_errors_reported() -> None:
    with pytest.raises(ObservationError) as info:
        parse_observation({"strings": [True, None], "emotives": {"x": "y"}})
    assert [d["loc"] for d in info.value.details or []] == [
        ["body", "strings", 0],
        ["body", "strings", 1],
        ["body", "emotives", "x"],
    ]


def test_coercions() -> None:
    obs = parse_observation(
        {"vectors": [[1, "2.5", True]], "emotives": {"a": True, "b": "0.5", "c": 3}}
    )
    assert obs.vectors == [[1.0, 2.5, 1.0]]
    assert all(isinstance(x, float) for x in obs.vectors[0])
    assert obs.emotives == {"a": 1.0, "b": 0.5, "c": 3.0}
    assert math.isnan(parse_observation({"vectors": [[math.nan]]}).vectors[0][0])


def test_metadata_any_json() -> None:
    md = {"a": [1, {"b": None}], "c": True}
    assert parse_observation({"metadata": md}).metadata == md


def test_vectors_of_different_lengths_rejected() -> None:
    with pytest.raises(ObservationError) as info:
        parse_observation({"vectors": [[1.0], [1.0, 2.0]]})
    assert info.value.details[0]["type"] == "vector_length_mismatch"  # type: ignore[index]


def test_non_object_rejected() -> None:
    with pytest.raises(ObservationError):
        parse_observation([1])


# -- differential test against the real pydantic model KATO uses -------------------------

pydantic = pytest.importorskip("pydantic")


class _KatoObservation(pydantic.BaseModel):  # type: ignore[misc,name-defined]
    strings: list[str] = []
    vectors: list[list[float]] = []
    emotives: dict[str, float] = {}
    metadata: dict[str, Any] = {}


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["a", "0.5", "-3", "1e3", "", "x1", " 2 "]),
)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3))
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "strings": st.one_of(_scalars, st.lists(_scalars, max_size=3)),
        "vectors": st.one_of(
            _scalars,
            st.lists(st.one_of(_scalars, st.lists(_scalars, min_size=2, max_size=2)), max_size=2),
        ),
        "emotives": st.one_of(
            _scalars, st.dictionaries(st.sampled_from(["j", "k"]), _scalars, max_size=2)
        ),
        "metadata": st.one_of(
            _scalars, st.dictionaries(st.sampled_from(["m"]), _values, max_size=1)
        ),
        "extra": _values,
    },
)


@settings(max_examples=300, deadline=None)
@given(_bodies)
def test_accepts_exactly_what_pydantic_accepts(body: dict[str, Any]) -> None:
    raw = json.dumps(body)
    try:
        model = _KatoObservation.model_validate_json(raw)
        ok = True
    except pydantic.ValidationError as exc:
        ok = False
        locs = sorted(json.dumps(["body", *e["loc"]]) for e in exc.errors())
    try:
        obs = parse_observation(json.loads(raw))
    except ObservationError as err:
        assert not ok, f"rejected a valid body {raw}: {err.details}"
        assert sorted(json.dumps(d["loc"]) for d in err.details or []) == locs
        return
    assert ok, f"accepted an invalid body {raw}"
    assert obs.strings == model.strings
    assert obs.vectors == model.vectors
    assert obs.emotives == model.emotives
    assert obs.metadata == model.metadata
