"""Engine semantics: the spec §12 rules in our part (1-6, 13, 14) and DESIGN.md deviations."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kato_stream.core.config import EngineDefaults, SessionConfig
from kato_stream.core.engine import Command, CommandResult, Engine, collapse_metadata
from kato_stream.core.errors import CommandError, ConfigError, EmptySTMError, ObservationError
from kato_stream.core.knowledge import KnowledgeBase
from kato_stream.core.naming import pattern_name, vector_name
from kato_stream.core.session import SessionState
from kato_stream.core.vectors import MemoryVectorIndex


class Harness:
    """One node, sessions by id, commands numbered like offsets of one partition."""

    def __init__(self, defaults: EngineDefaults | None = None, node: str = "n1") -> None:
        self.engine = Engine(defaults)
        self.node = node
        self.kb = KnowledgeBase(node_id=node)
        self.vectors = MemoryVectorIndex()
        self.states: dict[str, SessionState | None] = {}
        self.offset = 0

    def do(
        self,
        op: str,
        payload: dict[str, Any] | None = None,
        sid: str = "s1",
        msg_id: str | None = None,
    ) -> CommandResult:
        self.offset += 1
        cmd = Command(
            op, sid, self.node, payload or {}, msg_id, f"kato.observations:0:{self.offset}"
        )
        res = self.engine.handle(cmd, self.states.get(sid), self.kb, self.vectors)
        self.states[sid] = res.state
        return res

    def obs(self, *strings: str, sid: str = "s1", **extra: Any) -> CommandResult:
        return self.do("observe", {"strings": list(strings), **extra}, sid=sid)

    def state(self, sid: str = "s1") -> SessionState:
        s = self.states[sid]
        assert s is not None
        return s


# -- event building (§2.2, rule 3) ---------------------------------------------------------


def test_event_sorted_strings_duplicates_and_empty_kept() -> None:
    h = Harness()
    h.obs("b", "a", "", "b", "B", "10", "2")
    assert h.state().stm == [["", "10", "2", "B", "a", "b", "b"]]


def test_vectors_first_then_strings_each_group_sorted() -> None:
    h = Harness()
    r = h.obs("ABC", "AAA", vectors=[[1.0, 0.0, 0.0]])
    own = vector_name([1.0, 0.0, 0.0])
    assert own == "VCTR|9d58821e286eae6a77923d694a12ede7cbeabfbd"
    assert h.state().stm == [[own, "AAA", "ABC"]]
    assert r.response["stm_length"] == 1


def test_vectors_are_summed_and_neighbours_join_after_learn() -> None:
    h = Harness()
    h.obs(vectors=[[1.0, 0.0], [0.0, 1.0]])
    summed = vector_name([1.0, 1.0])
    assert h.state().stm == [[summed]]
    h.obs("x")
    h.do("learn")
    assert h.vectors.search([1.0, 1.0]) == [summed]
    h.obs(vectors=[[5.0, 5.0]])
    assert h.state().stm == [sorted([vector_name([5.0, 5.0]), summed])]


def test_session_sort_symbols_false_is_honoured() -> None:
    h = Harness()
    h.do("configure", {"config": {"sort_symbols": False}})
    h.obs("zeta", "alpha")
    assert h.state().stm == [["zeta", "alpha"]]


def test_use_token_matching_update_toggles_sorting() -> None:
    h = Harness()
    h.do("configure", {"use_token_matching": False})
    assert h.state().config.sort_symbols is False
    h.obs("b", "a")
    assert h.state().stm == [["b", "a"]]


def test_empty_observation_appends_nothing_but_counts_time_and_emotives() -> None:
    h = Harness()
    h.do("configure", {"max_pattern_length": 1})
    r = h.obs(emotives={"joy": 1.0})
    assert r.response["time"] == 1
    assert r.response["stm_length"] == 0
    assert r.response["auto_learned_pattern"] is None
    assert h.state().emotives_accumulator == [{"joy": 1.0}]
    assert h.state().predictions == []


def test_time_counter() -> None:
    h = Harness()
    h.obs("a")
    h.obs()
    h.obs("b")
    assert h.state().time == 3
    h.do("learn")
    assert h.state().time == 3
    h.do("clear_stm")
    assert h.state().time == 0


def test_percept_data() -> None:
    h = Harness()
    h.obs("b", "a", emotives={"j": 1.0}, metadata={"m": 1})
    h.obs("c", emotives={"j": 3.0})
    assert h.state().percept_data == {
        "strings": ["c"],
        "vectors": [],
        "emotives": {"j": 2.0},
        "path": [],
        "metadata": {},
    }


# -- identifiers (rule 1, deviation: client id kept) ------------------------------------------


def test_unique_id_from_msg_id_or_source() -> None:
    h = Harness()
    assert h.do("observe", {"strings": ["a"]}, msg_id="m-1").response["unique_id"] == "m-1"
    r = h.obs("b")
    src = f"kato.observations:0:{h.offset}"
    assert r.response["unique_id"] == "obs-" + hashlib.sha1(src.encode()).hexdigest()[:32]


def test_learn_response_uses_prefixed_name_and_post_learn_count() -> None:
    h = Harness()
    h.obs("a")
    h.obs("b")
    r = h.do("learn")
    name = pattern_name([["a"], ["b"]])
    assert r.response == {
        "status": "learned",
        "pattern_name": "PTRN|" + name,
        "session_id": "s1",
        "processor_id": None,
        "message": f"Learned pattern PTRN|{name} from 0 events",
    }
    assert [e.name for e in r.learned] == [name]
    assert h.kb.get(name) is not None


# -- minimum pattern rule (rule 4) -------------------------------------------------------------


def test_one_event_with_two_symbols_is_learned() -> None:
    h = Harness()
    h.obs("a", "b")
    r = h.do("learn")
    assert r.response["pattern_name"] == "PTRN|" + pattern_name([["a", "b"]])


def test_single_symbol_not_stored_but_stm_cleared() -> None:
    h = Harness()
    h.obs("a", emotives={"j": 1.0})
    r = h.do("learn")
    assert r.response["pattern_name"] == ""
    assert r.response["status"] == "learned"
    assert r.learned == []
    assert h.state().stm == []
    assert h.kb.patterns == {}
    assert h.state().emotives_accumulator == []  # deviation: consumed anyway


def test_learn_on_empty_stm_rejected_without_change() -> None:
    h = Harness()
    h.obs(emotives={"j": 1.0})
    before = h.state().to_dict()
    with pytest.raises(EmptySTMError) as info:
        h.do("learn")
    assert info.value.message == "Cannot learn from empty STM"
    assert info.value.status == 400
    assert h.state().to_dict() == before


# -- accumulators (rule 5 + deviations) ------------------------------------------------------------


def test_learn_stores_accumulators_and_consumes_them() -> None:
    h = Harness()
    h.obs("x", emotives={"m": 0.9}, metadata={"tag": 123})
    h.obs("y", emotives={"m": 0.8}, metadata={"tag": True, "o": [1, "a"]})
    r = h.do("learn")
    ev = r.learned[0]
    assert ev.emotives == ({"m": 0.9}, {"m": 0.8})
    assert ev.metadata == {"tag": ["123", "True"], "o": ["[1, 'a']"]}
    assert h.state().emotives_accumulator == []
    assert h.state().metadata_accumulator == []
    h.obs("x", emotives={"m": 0.5})
    h.obs("y", emotives={"m": 0.3})
    r2 = h.do("learn")
    assert r2.learned[0].emotives == ({"m": 0.5}, {"m": 0.3})  # KATO would resend .9/.8
    rec = h.kb.get(ev.name)
    assert rec is not None and rec.emotives == [{"m": 0.9}, {"m": 0.8}, {"m": 0.5}, {"m": 0.3}]


def test_session_persistence_honoured() -> None:
    h = Harness()
    h.do("configure", {"persistence": 2})
    for v in (0.1, 0.2, 0.3):
        h.obs("x", emotives={"m": v})
        h.obs("y")
        r = h.do("learn")
        assert r.learned[0].persistence == 2
    rec = h.kb.get(pattern_name([["x"], ["y"]]))
    assert rec is not None and rec.emotives == [{"m": 0.2}, {"m": 0.3}]


def test_collapse_metadata() -> None:
    assert collapse_metadata([{"a": 45.67, "b": None}, {"a": "z"}, {"a": 45.67}]) == {
        "a": ["45.67", "z"],
        "b": ["None"],
    }


# -- auto-learn (rule 14, deviation: emotives carried) ------------------------------------------


def _auto(h: Harness, n: int, mode: str) -> None:
    h.do("configure", {"max_pattern_length": n, "stm_mode": mode})


def test_auto_learn_clear() -> None:
    h = Harness()
    _auto(h, 3, "CLEAR")
    assert h.obs("a").response["auto_learned_pattern"] is None
    h.obs("b")
    r = h.obs("c")
    assert r.response["auto_learned_pattern"] == "PTRN|" + pattern_name([["a"], ["b"], ["c"]])
    assert r.response["stm_length"] == 0
    assert h.state().stm == []


def test_auto_learn_rolling_learns_whole_stm_and_keeps_window() -> None:
    h = Harness()
    _auto(h, 3, "ROLLING")
    names = [h.obs(s).response["auto_learned_pattern"] for s in "ABCDE"]
    assert names[:2] == [None, None]
    assert names[2:] == ["PTRN|" + pattern_name([[x] for x in w]) for w in ("ABC", "BCD", "CDE")]
    assert h.state().stm == [["D"], ["E"]]


def test_auto_learn_trigger_is_greater_or_equal_after_lowering() -> None:
    h = Harness()
    for s in "abcd":
        h.obs(s)
    _auto(h, 2, "CLEAR")
    r = h.obs("e")
    assert r.response["auto_learned_pattern"] == "PTRN|" + pattern_name([[x] for x in "abcde"])
    assert h.state().stm == []


def test_auto_learn_one_event_learned_only_with_two_symbols() -> None:
    h = Harness()
    _auto(h, 1, "ROLLING")
    r = h.obs("a")
    assert r.response["auto_learned_pattern"] is None  # null, not ""
    assert h.state().stm == []
    r = h.obs("a", "b")
    assert r.response["auto_learned_pattern"] == "PTRN|" + pattern_name([["a", "b"]])
    assert h.state().stm == []


def test_rolling_with_max_one_and_longer_stm_never_shrinks() -> None:
    """KATO quirk: w = 0 and ``stm[-0:]`` is the whole STM."""
    h = Harness()
    h.obs("a")
    h.obs("b")
    _auto(h, 1, "ROLLING")
    r = h.obs("c")
    assert r.response["auto_learned_pattern"] == "PTRN|" + pattern_name([["a"], ["b"], ["c"]])
    assert h.state().stm == [["a"], ["b"], ["c"]]
    h.obs("d")
    assert len(h.state().stm) == 4


def test_invalid_stored_mode_behaves_as_clear() -> None:
    h = Harness()
    h.obs("a")
    st_ = h.state()
    st_.config = SessionConfig(max_pattern_length=2, stm_mode="weird")
    h.obs("b")
    assert h.state().stm == []
    assert len(h.kb.patterns) == 1


def test_auto_learned_pattern_carries_emotives_of_learned_events() -> None:
    h = Harness()
    _auto(h, 2, "CLEAR")
    h.obs("a", emotives={"j": 1.0}, metadata={"k": "v"})
    r = h.obs("b", emotives={"j": 3.0})
    ev = r.learned[0]
    assert ev.emotives == ({"j": 1.0}, {"j": 3.0})
    assert ev.metadata == {"k": ["v"]}
    assert h.state().emotives_accumulator == []


# -- config honoured (rule 13) -------------------------------------------------------------------


def test_configure_rejects_and_applies_nothing() -> None:
    h = Harness()
    h.obs("a")
    before = h.state()
    with pytest.raises(ConfigError) as info:
        h.do("configure", {"config": {"max_predictions": 0, "recall_threshold": 0.5}})
    assert info.value.details == {
        "error": "Configuration validation failed",
        "validation_errors": {"max_predictions": "Must be an integer between 1 and 10000"},
    }
    assert h.state() is before
    assert before.config == SessionConfig()


def test_open_rolls_back_bad_config_and_echoes_effective() -> None:
    h = Harness()
    r = h.do("open", {"config": {"max_predictions": 3, "persistence": 0}, "ttl_seconds": 0})
    assert r.response["session_config"]["max_predictions"] == 100
    assert r.response["ttl_seconds"] == 3600
    r = h.do("open", {"config": {"max_predictions": 3}, "ttl_seconds": 60, "metadata": {"a": 1}})
    assert r.response["session_config"]["max_predictions"] == 3
    assert h.state().ttl_seconds == 60
    assert h.state().metadata == {"a": 1}


def _learn_seq(h: Harness, *events: list[str], sid: str = "s1") -> None:
    for e in events:
        h.obs(*e, sid=sid)
    h.do("learn", sid=sid)


def test_observe_time_predictions_use_defaults_result_uses_session() -> None:
    h = Harness()
    _learn_seq(h, ["a"], ["b"], ["c"], ["d"], ["e"])
    h.do("configure", {"recall_threshold": 0.9})
    h.obs("a")
    r = h.obs("b")
    assert len(h.state().predictions) == 1  # KATO's observe-time search (threshold 0.1)
    assert r.predictions == []  # session threshold 0.9 honoured
    assert r.recall_threshold == 0.9
    assert h.do("predict").response["predictions"] == []


def test_result_predictions_equal_predict_right_after() -> None:
    h = Harness()
    _learn_seq(h, ["a"], ["b"], ["c"])
    _learn_seq(h, ["a"], ["x"], ["c"])
    h.obs("a")
    r = h.obs("c")
    p = h.do("predict")
    assert r.predictions and r.predictions == p.response["predictions"] == p.predictions
    assert r.future_potentials == p.response["future_potentials"]
    assert h.state().predictions == r.predictions  # config has no overrides: same object
    assert p.response["count"] == len(r.predictions)


def test_process_predictions_false_computes_none() -> None:
    h = Harness()
    _learn_seq(h, ["a"], ["b"], ["c"])
    h.do("configure", {"process_predictions": False})
    h.obs("a")
    r = h.obs("b")
    assert r.predictions == [] and r.future_potentials == []
    assert h.state().predictions == []
    assert h.do("predict").predictions  # GET predictions still computes


def test_predict_is_read_only() -> None:
    h = Harness()
    _learn_seq(h, ["a"], ["b"], ["c"])
    h.obs("a")
    h.obs("b")
    before = h.state().to_dict()
    h.do("predict")
    h.do("get")
    assert h.state().to_dict() == {**before, "last_offset": h.state().last_offset}


def test_fast_path_future_potentials_are_the_sessions_own() -> None:
    h = Harness()
    _learn_seq(h, ["a"], ["b"], ["c"])
    _learn_seq(h, ["x"], ["y"], ["z"])
    h.obs("a", sid="s1")
    r1 = h.obs("b", sid="s1")
    assert r1.future_potentials and r1.future_potentials[0]["future"] == [["c"]]
    h.obs("x", sid="s2")
    h.obs("y", sid="s2")  # s2 computes another full path on the same node
    h.do("clear_stm", sid="s1")
    r = h.obs("a", sid="s1")  # single symbol: fast path
    assert r.predictions and "type" not in r.predictions[0]
    assert r.future_potentials == r1.future_potentials  # not s2's value
    fresh = h.obs("x", sid="s3")
    assert fresh.future_potentials == []


def test_no_pre_potential_in_output() -> None:
    h = Harness()
    for i in range(8):
        _learn_seq(h, ["a"], ["b"], [f"c{i}"])
    h.do("configure", {"max_predictions": 1})
    h.obs("a")
    r = h.obs("b")
    assert len(r.predictions) == 1
    assert all("_pre_potential" not in p for p in r.predictions + h.state().predictions)


# -- clear, close, errors -----------------------------------------------------------------------


def test_clear_stm_resets_session_only() -> None:
    h = Harness()
    h.obs("a", emotives={"j": 1.0}, metadata={"k": 1})
    h.do("configure", {"max_predictions": 7})
    r = h.do("clear_stm")
    s = h.state()
    assert r.response == {"status": "cleared", "session_id": "s1"}
    assert (s.stm, s.emotives_accumulator, s.metadata_accumulator, s.time) == ([], [], [], 0)
    assert s.percept_data == {} and s.predictions == []
    assert s.config.max_predictions == 7


def test_clear_all_clears_node_and_vectors() -> None:
    h = Harness()
    h.obs("v", vectors=[[1.0, 2.0]])
    h.obs("w")
    h.do("learn")
    h.obs("q", sid="s2")
    assert h.kb.patterns and len(h.vectors) == 1
    r = h.do("clear_all", msg_id="clr-1")
    assert r.cleared == "clear:s1/clr-1"
    assert r.response == {"status": "cleared", "session_id": "s1", "scope": "all"}
    assert h.kb.patterns == {} and len(h.vectors) == 0
    assert h.state("s2").stm == [["q"]]  # other sessions keep their STM


def test_close_returns_no_state() -> None:
    h = Harness()
    h.obs("a")
    r = h.do("close")
    assert r.state is None
    assert r.response == {"status": "deleted", "session_id": "s1"}


def test_rejections() -> None:
    h = Harness()
    with pytest.raises(CommandError):
        h.do("dance")
    with pytest.raises(ObservationError):
        h.do("observe", {"strings": [1]})
    with pytest.raises(ObservationError):
        h.do("observe", {"vectors": [[1.0], [1.0, 2.0]]})
    with pytest.raises(CommandError):
        h.engine.handle(Command("observe", "s1", "other", {}), None, h.kb, h.vectors)
    with pytest.raises(CommandError):
        h.engine.handle(Command("observe", "s1", "n1", {}), None, h.kb, h.vectors)


def test_input_state_never_mutated() -> None:
    h = Harness()
    h.obs("a")
    st0 = h.state()
    snapshot = st0.to_dict()
    h.engine.handle(
        Command("observe", "s1", "n1", {"strings": ["b"]}, source="t:0:99"), st0, h.kb, h.vectors
    )
    h.engine.handle(Command("learn", "s1", "n1", {}, source="t:0:100"), st0, h.kb, h.vectors)
    assert st0.to_dict() == snapshot


def test_get_snapshot() -> None:
    h = Harness()
    h.obs("a", emotives={"j": 1.0})
    r = h.do("get")
    assert r.response["stm"] == [["a"]]
    assert r.response["time"] == 1
    assert r.response["config"]["max_predictions"] == 100
    assert r.response["emotives_accumulator"] == [{"j": 1.0}]
    assert r.response["ttl_seconds"] == 3600


# -- observe_sequence (§8.2) ----------------------------------------------------------------------


def test_observe_sequence_learn_after_each_and_at_end() -> None:
    h = Harness()
    r = h.do(
        "observe_sequence",
        {
            "observations": [
                {"strings": ["a", "b"]},
                {"strings": ["c"], "unique_id": "u1"},
                {"strings": ["d"]},
            ],
            "learn_after_each": True,
        },
        msg_id="m",
    )
    resp = r.response
    assert resp["observations_processed"] == 3
    assert resp["auto_learned_patterns"] == ["PTRN|" + pattern_name([["a", "b"]]), "", ""]
    assert [x["unique_id"] for x in resp["results"]] == ["m#0", "u1", "m#2"]
    assert [x["stm_length"] for x in resp["results"]] == [0, 0, 0]
    assert [e.learn_id for e in r.learned] == ["s1/m#0"]
    h.obs("x")
    r = h.do(
        "observe_sequence",
        {
            "observations": [{"strings": ["p"]}, {"strings": ["q"]}],
            "learn_at_end": True,
            "clear_stm_between": True,
        },
    )
    assert r.response["final_learned_pattern"] == ""  # STM was reset before q: only [q]
    assert r.response["initial_stm_length"] == 1
    assert r.response["isolated"] is True
    assert h.state().time == 6


def test_observe_sequence_validates_everything_first() -> None:
    h = Harness()
    h.obs("z")
    with pytest.raises(ObservationError) as info:
        h.do(
            "observe_sequence",
            {"observations": [{"strings": ["a"]}, {"strings": [3]}], "learn_at_end": True},
        )
    assert info.value.details[0]["loc"] == ["body", "observations", 1, "strings", 0]  # type: ignore[index]
    assert h.state().stm == [["z"]]
    assert h.kb.patterns == {}


def test_observe_sequence_empty() -> None:
    h = Harness()
    r = h.do("observe_sequence", {"observations": []})
    assert r.response["observations_processed"] == 0
    assert r.response["results"] == []


# -- finalize_training (§4.8) ---------------------------------------------------------------------


def test_finalize_training_whole_pattern_metrics() -> None:
    h = Harness()
    _learn_seq(h, ["a"], ["a", "b"])
    _learn_seq(h, ["c"], ["d"])
    r = h.do("finalize_training")
    assert r.response["patterns_processed"] == 2
    pre = h.kb.precomputed[pattern_name([["a"], ["a", "b"]])]
    p_a, p_b = 2 / 3, 1 / 3
    assert math.isclose(pre.entropy, -(p_a * math.log2(p_a) + p_b * math.log2(p_b)))
    assert math.isclose(
        pre.normalized_entropy, -(p_a * math.log(p_a) + p_b * math.log(p_b)) / math.log(4)
    )
    assert math.isclose(pre.global_normalized_entropy, -2 * (0.5 * math.log(0.5)) / math.log(4))
    assert pre.tf_vector == {"a": 2 / 3, "b": 1 / 3}


# -- replay safety and determinism ------------------------------------------------------------------


def test_redelivered_learn_counts_once() -> None:
    h = Harness()
    h.obs("a")
    h.obs("b")
    st0 = h.state()
    cmd = Command("learn", "s1", "n1", {}, "learn-7", "t:0:1")
    r1 = h.engine.handle(cmd, st0, h.kb, h.vectors)
    r2 = h.engine.handle(cmd, st0, h.kb, h.vectors)  # redelivery of the same command
    assert r1.learned[0].learn_id == r2.learned[0].learn_id == "s1/learn-7"
    rec = h.kb.get(r1.learned[0].name)
    assert rec is not None and rec.frequency == 1


_events = st.lists(
    st.lists(st.sampled_from("abcdef"), min_size=1, max_size=3), min_size=1, max_size=4
)


@settings(max_examples=40, deadline=None)
@given(st.lists(_events, min_size=1, max_size=6))
def test_replaying_learn_events_is_a_no_op(patterns: list[list[list[str]]]) -> None:
    h = Harness()
    events = []
    for p in patterns:
        for e in p:
            h.obs(*e)
        events.extend(h.do("learn").learned)
    snapshot = json.dumps(_kb_view(h.kb), sort_keys=True)
    for ev in events:
        assert h.kb.apply_learn(ev) is False
    assert json.dumps(_kb_view(h.kb), sort_keys=True) == snapshot


def _kb_view(kb: KnowledgeBase) -> dict[str, Any]:
    return {
        "patterns": {n: r.to_api() for n, r in kb.patterns.items()},
        "freq": dict(kb.symbol_freq),
        "pmf": dict(kb.pmf),
        "totals": [
            kb.total_symbols_in_patterns_frequencies,
            kb.total_pattern_frequencies,
            kb.total_unique_patterns,
        ],
        "affinity": kb.affinity,
    }


@settings(max_examples=30, deadline=None)
@given(st.lists(_events, min_size=1, max_size=6), _events, st.randoms(use_true_random=False))
def test_predictions_independent_of_learn_order(
    patterns: list[list[list[str]]], probe: list[list[str]], rnd: Any
) -> None:
    def run(order: list[list[list[str]]]) -> list[Any]:
        h = Harness()
        for p in order:
            for e in p:
                h.obs(*e, sid="train")
            h.do("learn", sid="train")
        out = []
        for e in probe:  # a fresh session: its history does not depend on the order
            r = h.obs(*e, sid="probe")
            out.append([r.predictions, r.future_potentials, h.state("probe").predictions])
        out.append(h.do("predict", sid="probe").response)
        return out

    shuffled = list(patterns)
    rnd.shuffle(shuffled)
    assert json.dumps(run(patterns), sort_keys=True) == json.dumps(run(shuffled), sort_keys=True)


def test_same_stream_same_bytes() -> None:
    def run() -> str:
        h = Harness()
        out = []
        for cmd in [
            ("observe", {"strings": ["b", "a"], "emotives": {"j": 1}}),
            ("observe", {"strings": ["c"], "vectors": [[0.5, 1.0]]}),
            ("learn", {}),
            ("observe", {"strings": ["a", "b"]}),
            ("observe", {"vectors": [[0.5, 1.0]]}),
            ("predict", {}),
        ]:
            r = h.do(*cmd)
            out.append(
                [r.response, r.predictions, r.future_potentials, [e.to_dict() for e in r.learned]]
            )
        return json.dumps(out, sort_keys=True)

    assert run() == run()
