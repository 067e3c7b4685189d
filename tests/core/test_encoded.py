"""The kernel's own JSON of the predictions and future potentials
(``MatcherOptions(encoded=True)``).

The stream path never builds the predictions' or the future potentials' dicts: the C kernel
writes their JSON (``kernel.predictions_json``, ``kernel.futures_json``) and the record
carries those bytes.  What must hold:

* the bytes are exactly the stream layer's encoding (``codecs.dumps``: sorted keys) of the
  dicts the kernel path builds without the option, for any tokens (quotes, backslashes,
  control characters, non-ASCII), emotives, ranking key and prediction count (the
  property tests of test_kernel.py check the same on their workloads through
  ``both_paths``);
* ``EncodedPredictions`` reads like the list it encodes (length without decoding; items,
  iteration and equality decoded once) and a session state shares it instead of copying;
* records that carry it encode to the same bytes as records that carry the dicts, and the
  output record and the session list share one encoding (``codecs.dumps_sharing``);
* the writer refuses a malformed table or layout with an error, never with bad bytes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kato_stream.core import kernel
from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.core.predictions import MatcherOptions, PredictParams, predict
from kato_stream.core.predictor.encoded import EncodedPredictions, own
from kato_stream.core.prefilter import pattern_index
from kato_stream.core.session import SessionState
from kato_stream.stream import codecs

pytestmark = pytest.mark.skipif(not kernel.AVAILABLE, reason="the C kernel is not built")

#: Tokens that need escaping or are not ASCII, next to plain ones.
TOKENS = ["a", "b", "c", "d", 'q"uote', "back\\slash", "new\nline", "\x01ctl", "é", "\u2028", "😀"]
token = st.sampled_from(TOKENS)
event = st.lists(token, min_size=1, max_size=4).map(lambda e: sorted(set(e)))
emotives = st.dictionaries(
    st.sampled_from(["joy", "fear", "é"]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    max_size=2,
)


def learn(kb: KnowledgeBase, events: list[list[str]], emo: dict[str, float]) -> None:
    ev = tuple(tuple(e) for e in events)
    name = hashlib.sha1(repr(ev).encode()).hexdigest()
    kb.apply_learn(LearnEvent("n", f"l{len(kb.applied)}", name, ev, emotives=(emo,) if emo else ()))


def both(
    kb: KnowledgeBase, stm: list[list[str]], params: PredictParams
) -> tuple[object, object, object, object]:
    """(predictions as dicts, encoded; future potentials as dicts, encoded)."""
    dicts = predict(kb, stm, params, MatcherOptions(c_kernel=True))
    enc = predict(kb, stm, params, MatcherOptions(c_kernel=True, encoded=True))
    return dicts.predictions, enc.predictions, dicts.future_potentials, enc.future_potentials


@settings(max_examples=200, deadline=None)
@given(
    patterns=st.lists(
        st.tuples(st.lists(event, min_size=1, max_size=4), emotives), min_size=1, max_size=25
    ),
    stm=st.lists(event, min_size=1, max_size=3),
    maxp=st.sampled_from([1, 2, 7, 100]),
    algo=st.sampled_from(["potential", "similarity", "frequency", "bayesian_posterior"]),
)
def test_kernel_json_is_the_stream_encoding_of_the_dicts(
    patterns: list[tuple[list[list[str]], dict[str, float]]],
    stm: list[list[str]],
    maxp: int,
    algo: str,
) -> None:
    kb = KnowledgeBase("n")
    for p, emo in patterns:
        learn(kb, p, emo)
    params = PredictParams(recall_threshold=0.0, max_predictions=maxp, rank_sort_algo=algo)
    dicts, enc, fps, fps_enc = both(kb, stm, params)
    assert codecs.dumps(enc) == codecs.dumps(dicts)
    assert codecs.dumps(fps_enc) == codecs.dumps(fps)
    if sum(len(e) for e in stm) > 1 and dicts:
        assert isinstance(enc, EncodedPredictions)
        assert len(enc) == len(dicts)
        assert isinstance(fps_enc, EncodedPredictions)
        assert len(fps_enc) == len(fps)  # type: ignore[arg-type]


def small_kb() -> KnowledgeBase:
    kb = KnowledgeBase("n")
    learn(kb, [["a", "b"], ["c"], ['q"uote']], {"joy": 0.5})
    learn(kb, [["a"], ["b", "d"]], {})
    learn(kb, [["b"], ["c"], ["d"]], {"fear": 1e-7})
    return kb


def test_encoded_predictions_read_like_their_list() -> None:
    kb = small_kb()
    dicts, enc, *_ = both(kb, [["a", "b"], ["c"]], PredictParams(recall_threshold=0.0))
    assert isinstance(enc, EncodedPredictions) and isinstance(dicts, list)
    assert len(enc) == len(dicts) == 3 and enc._items is None  # length without decoding
    assert enc != [] and enc != dicts[:2] and enc._items is None  # other length: not decoded
    assert enc == dicts and list(enc) == dicts and enc[0] == dicts[0] and enc[1:] == dicts[1:]
    assert enc.decoded() is enc.decoded()  # decoded once
    assert [p["name"] for p in enc] == [p["name"] for p in dicts]
    again = predict(
        kb,
        [["a", "b"], ["c"]],
        PredictParams(recall_threshold=0.0),
        MatcherOptions(c_kernel=True, encoded=True),
    ).predictions
    assert again == enc and again is not enc
    assert enc != dicts[:1] and enc.__eq__("x") is NotImplemented
    with pytest.raises(TypeError):
        hash(enc)
    assert "3 predictions" in repr(enc)


def test_a_session_state_shares_encoded_predictions() -> None:
    kb = small_kb()
    _dicts, enc, _fps, fps = both(kb, [["a", "b"], ["c"]], PredictParams(recall_threshold=0.0))
    assert isinstance(enc, EncodedPredictions) and isinstance(fps, EncodedPredictions)
    assert own(enc) is enc
    plain = [{"x": 1}]
    assert own(plain) == plain and own(plain) is not plain
    st_ = SessionState(
        session_id="s", node_id="n", predictions=enc, predictions_id="p", future_potentials=fps
    )
    assert st_.copy().predictions is enc and st_.copy().future_potentials is fps
    assert st_.to_dict()["predictions"] is enc and st_.to_dict()["future_potentials"] is fps
    back = SessionState.from_dict(st_.to_dict())
    assert back.predictions is enc and back.future_potentials is fps
    assert enc._items is None and fps._items is None  # none of that decoded them


def test_records_carry_the_same_bytes_and_share_one_encoding() -> None:
    kb = small_kb()
    dicts, enc, *_ = both(kb, [["a", "b"], ["c"]], PredictParams(recall_threshold=0.0))
    record = {"op": "observe", "predictions": enc, "status": "okay"}
    assert codecs.dumps(record) == codecs.dumps({**record, "predictions": dicts})
    out, lists = codecs.dumps_sharing(record, {"predictions": enc})
    assert isinstance(enc, EncodedPredictions)
    assert lists["predictions"] is enc.json  # the session list is the kernel's bytes
    assert out == codecs.dumps({**record, "predictions": dicts})
    with pytest.raises(TypeError, match="not JSON serializable"):
        codecs.dumps({"x": object()})


def writer_inputs() -> tuple[object, ...]:
    kb = small_kb()
    idx = pattern_index(kb)
    state = ["a", "b", "c"]
    q = kernel.state_codes(idx, state)
    sel = np.arange(len(idx.records), dtype=np.int64)
    info, _u = kernel.survivors(idx, sel, q)
    return idx, sel, info, q, [len(state)], [codecs.dumps(s) for s in state]


def test_the_writer_copies_table_values_and_constants_in_layout_order() -> None:
    idx, sel, info, q, lens, sj = writer_inputs()
    n = len(sel)  # type: ignore[arg-type]
    tricky = ']},\\"x'  # brackets, a comma, a backslash and a quote inside a string
    table = codecs.dumps([[1.5e-07] * n, [{"k": tricky}] * n])
    layout = [
        (b'{"a":', kernel.J_COLUMN, 1),
        (b',"b":', kernel.J_CONST, b"[]"),
        (b',"c":', kernel.J_COLUMN, 0),
    ]
    raw = kernel.predictions_json(idx, sel, info, q, lens, sj, table, 2, layout)  # type: ignore[arg-type]
    assert codecs.loads(raw) == [{"a": {"k": tricky}, "b": [], "c": 1.5e-07}] * n


@pytest.mark.parametrize(
    ("table", "ncol", "layout", "match"),
    [
        (b"[[1,2,3]]", 1, [(b'{"a":', 7, 1)], "layout"),  # column out of range
        (b"[[1,2,3]]", 1, [("str", 7, 0)], "layout"),  # prefix not bytes
        (b"[[1,2,3]]", 1, [(b'{"a":', 99, 0)], "layout"),  # unknown kind
        (b"[[1,2,3]]", 1, [(b'{"a":', 8, 5)], "layout"),  # constant not bytes
        (b"[[1,2]]", 1, [(b'{"a":', 7, 0)], "table"),  # too few values
        (b"[[1,2,3,4]]", 1, [(b'{"a":', 7, 0)], "table"),  # too many values
        (b"[[1,2,3]", 1, [(b'{"a":', 7, 0)], "table"),  # truncated
        (b"[[1,2,3]],", 1, [(b'{"a":', 7, 0)], "table"),  # trailing bytes
    ],
)
def test_the_writer_refuses_a_bad_table_or_layout(
    table: bytes, ncol: int, layout: list[kernel.JsonField], match: str
) -> None:
    idx, sel, info, q, lens, sj = writer_inputs()
    assert len(sel) == 3  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        kernel.predictions_json(idx, sel, info, q, lens, sj, table, ncol, layout)  # type: ignore[arg-type]


def test_the_futures_writer_writes_each_patterns_future_and_its_values() -> None:
    """``futures_json``: events[e2:] of each selected pattern, tokens escaped as orjson
    escapes them, beside table values and constants in layout order."""
    idx, sel, info, _q, _lens, _sj = writer_inputs()
    e2 = np.zeros(3, dtype=np.int32)  # every pattern's whole sequence is its "future"
    e2[0] = 1
    table = codecs.dumps([[0.5, 0.25, 1e-300], [1, 2, 3]])
    layout = [
        (b'{"f":', kernel.J_FUTURE, None),
        (b',"k":', kernel.J_CONST, b"null"),
        (b',"v":', kernel.J_COLUMN, 0),
        (b',"w":', kernel.J_COLUMN, 1),
    ]
    raw = kernel.futures_json(idx, sel, e2, table, 2, layout)  # type: ignore[arg-type]
    assert codecs.loads(raw) == [
        {"f": [["c"], ['q"uote']], "k": None, "v": 0.5, "w": 1},
        {"f": [["a"], ["b", "d"]], "k": None, "v": 0.25, "w": 2},
        {"f": [["b"], ["c"], ["d"]], "k": None, "v": 1e-300, "w": 3},
    ]
    assert b'"q\\"uote"' in raw  # the token's orjson bytes, copied
    assert codecs.loads(kernel.futures_json(idx, sel[:0], e2[:0], b"[[]]", 1, layout[:1])) == []  # type: ignore[index]


@pytest.mark.parametrize(
    ("e2", "table", "layout", "error", "match"),
    [
        ([0, 0, 0], b"[[1,2,3]]", [(b'{"a":', kernel.J_MATCHES, None)], ValueError, "kinds"),
        ([0, 0, 0], b"[[1,2,3]]", [(b'{"a":', kernel.J_COLUMN, 1)], ValueError, "layout"),
        ([0, 0, 0], b"[[1,2]]", [(b'{"a":', kernel.J_COLUMN, 0)], ValueError, "table"),
        ([0, 0, 9], b"[[1,2,3]]", [(b'{"a":', kernel.J_FUTURE, None)], IndexError, "range"),
        ([0, 0, -1], b"[[1,2,3]]", [(b'{"a":', kernel.J_FUTURE, None)], IndexError, "range"),
        ([0, 0], b"[[1,2,3]]", [(b'{"a":', kernel.J_FUTURE, None)], ValueError, "sizes"),
    ],
)
def test_the_futures_writer_refuses_bad_input(
    e2: list[int], table: bytes, layout: list[kernel.JsonField], error: type, match: str
) -> None:
    idx, sel, _info, _q, _lens, _sj = writer_inputs()
    with pytest.raises(error, match=match):
        kernel.futures_json(idx, sel, np.asarray(e2, dtype=np.int32), table, 1, layout)  # type: ignore[arg-type]
