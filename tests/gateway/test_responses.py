"""The gateway's bulky answers (gateway/responses.py): orjson-rendered, and a client parses
exactly what Starlette's JSONResponse would have given it."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from kato_stream.gateway.responses import BulkJSONResponse

finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_a_client_parses_the_same_values_as_from_starlettes_encoding(content: Any) -> None:
    ours = BulkJSONResponse(content)
    theirs = JSONResponse(content)
    assert json.loads(ours.body) == json.loads(theirs.body)
    assert ours.media_type == theirs.media_type == "application/json"
    assert ours.headers["content-length"] == str(len(ours.body))


def test_compact_utf8_like_starlette() -> None:
    content = {"name": "PTRN|é☃", "similarity": 0.1, "past": [["a", "b"]], "n": 3}
    assert BulkJSONResponse(content).body == JSONResponse(content).body


def test_what_orjson_refuses_is_rendered_by_starlette() -> None:
    content = {"big": 2**70, 1: "non-str key"}
    body = BulkJSONResponse({"big": 2**70}).body
    assert json.loads(body) == {"big": 2**70}
    assert json.loads(BulkJSONResponse(content).body) == {"big": 2**70, "1": "non-str key"}
