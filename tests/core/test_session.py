"""SessionState serialises to plain JSON and back exactly."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from kato_stream.core.config import SessionConfig
from kato_stream.core.session import SessionState

_sym = st.text(max_size=4)
_f = st.floats(allow_nan=False, allow_infinity=False)


@given(
    stm=st.lists(st.lists(_sym, max_size=3), max_size=4),
    emo=st.lists(st.dictionaries(_sym, _f, max_size=2), max_size=3),
    meta=st.lists(
        st.dictionaries(_sym, st.one_of(st.integers(), _sym, st.none()), max_size=2), max_size=2
    ),
    time=st.integers(0, 10**6),
    vecs=st.lists(st.tuples(_sym, st.lists(_f, max_size=3)), max_size=2),
    ttl=st.one_of(st.none(), st.integers(1, 10**5)),
    mp=st.one_of(st.none(), st.integers(1, 100)),
)
def test_round_trip_through_json(stm, emo, meta, time, vecs, ttl, mp) -> None:  # type: ignore[no-untyped-def]
    s = SessionState(
        session_id="s",
        node_id="n",
        stm=stm,
        emotives_accumulator=emo,
        metadata_accumulator=meta,
        time=time,
        config=SessionConfig(max_predictions=mp, filter_pipeline=["length"]),
        deferred_vectors=vecs,
        predictions=[{"name": "x", "potential": 1.5}],
        future_potentials=[{"future": [["a"]], "aggregate_potential": 1.0}],
        metadata={"k": [1, 2]},
        ttl_seconds=ttl,
        last_offset="t:0:5",
    )
    d = s.to_dict()
    back = SessionState.from_dict(json.loads(json.dumps(d)))
    assert back == s
    assert back.to_dict() == d


def test_trim_caps() -> None:
    s = SessionState("s", "n", stm=[["a"]] * 1005, emotives_accumulator=[{"a": 1.0}] * 1001)
    s.stm[-1] = ["last"]
    s.trim()
    assert len(s.stm) == 1000
    assert s.stm[-1] == ["last"]
    assert len(s.emotives_accumulator) == 1000


def test_copy_is_independent() -> None:
    s = SessionState("s", "n", stm=[["a"]])
    c = s.copy()
    c.stm[0].append("b")
    c.stm.append(["c"])
    assert s.stm == [["a"]]
