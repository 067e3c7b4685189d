"""predict(): spec §5 verified numbers, quirks, and exactness of the candidate pruning."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.core.predictions import MatcherOptions, PredictParams, predict

FULL_KEYS = [
    "type", "name", "frequency", "emotives", "matches", "past", "present", "missing",
    "extras", "anomalies", "potential", "evidence", "similarity", "fragmentation", "snr",
    "confluence", "predictive_information", "sequence", "future", "confidence",
    "weighted_similarity", "weighted_evidence", "weighted_confidence", "weighted_snr",
    "entropy", "normalized_entropy", "global_normalized_entropy", "itfdf_similarity",
    "tfidf_score", "pattern_probability", "weighted_strength", "bayesian_posterior",
    "bayesian_prior", "bayesian_likelihood",
]  # fmt: skip
FAST_KEYS = [
    "name", "pattern_data", "length", "frequency", "emotives", "matches", "missing",
    "present", "past", "future", "extras", "similarity", "evidence", "confidence", "snr",
    "fragmentation", "anomalies", "weighted_similarity", "weighted_evidence",
    "weighted_confidence", "weighted_snr", "potential",
]  # fmt: skip


def name_of(events: Sequence[Sequence[str]]) -> str:
    return hashlib.sha1(str([list(e) for e in events]).encode()).hexdigest()


def learn(
    kb: KnowledgeBase, events: Sequence[Sequence[str]], emotives: Sequence[dict[str, float]] = ()
) -> str:
    ev = tuple(tuple(e) for e in events)
    n = name_of(events)
    kb.apply_learn(LearnEvent("n", f"l{len(kb.applied)}", n, ev, tuple(emotives)))
    return n


def by_name(preds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in preds}


@pytest.fixture
def worked_kb() -> KnowledgeBase:
    kb = KnowledgeBase("n")
    learn(kb, [["hello", "world"], ["foo"], ["bar", "baz"]], [{"joy": 1.0}, {"joy": 0.5}])
    learn(kb, [["hello"], ["there"], ["foo"]])
    learn(kb, [["hello"], ["there"], ["foo"]])
    return kb


def test_worked_example_full_path(worked_kb: KnowledgeBase) -> None:
    res = predict(worked_kb, [["hello"], ["foo"]], PredictParams())
    assert not res.fast_path
    a = by_name(res.predictions)[name_of([["hello"], ["there"], ["foo"]])]
    b = by_name(res.predictions)[name_of([["hello", "world"], ["foo"], ["bar", "baz"]])]
    assert [p["name"] for p in res.predictions] == [a["name"], b["name"]]
    assert list(a) == FULL_KEYS
    assert a["similarity"] == 0.8 and b["similarity"] == 0.5714285714285714
    assert a["present"] == [["hello"], ["there"], ["foo"]] and a["future"] == []
    assert b["present"] == [["hello", "world"], ["foo"]] and b["future"] == [["bar", "baz"]]
    assert a["missing"] == [[], ["there"], []] and a["extras"] == [[], []]
    assert b["missing"] == [["world"], []]
    assert (a["evidence"], a["confidence"]) == (0.6666666666666666, 0.6666666666666666)
    assert (b["evidence"], b["confidence"]) == (0.4, 0.6666666666666666)
    assert a["snr"] == b["snr"] == 1.0 and a["fragmentation"] == 1.0
    assert a["itfdf_similarity"] == 0.9618726943880421
    assert b["itfdf_similarity"] == 0.9809363471940211
    assert (a["confluence"], b["confluence"]) == (0.5, 0.25)
    for p in (a, b):
        assert p["entropy"] == 1.584962500721156
        assert p["normalized_entropy"] == 0.6131471927654584
        assert p["global_normalized_entropy"] == 0.1934264036172708
        assert p["tfidf_score"] == 0.4444444444444444
    assert (a["pattern_probability"], a["weighted_strength"]) == (
        0.6666666666666666,
        0.5333333333333333,
    )
    assert (b["pattern_probability"], b["weighted_strength"]) == (
        0.3333333333333333,
        0.19047619047619047,
    )
    assert (a["predictive_information"], b["predictive_information"]) == (0.0, 0.19047619047619047)
    assert a["bayesian_posterior"] == 0.7368421052631579
    assert b["bayesian_posterior"] == 0.2631578947368421
    assert (a["emotives"], b["emotives"]) == ({}, {"joy": 0.75})
    assert a["potential"] == 2.7952060277213753 and b["potential"] == 2.5476030138606878
    assert res.future_potentials == [
        {
            "future": [["bar", "baz"]],
            "aggregate_potential": 1.0,
            "supporting_patterns": 1,
            "total_weighted_frequency": 0.5714285714285714,
        }
    ]


def test_worked_example_fast_path(worked_kb: KnowledgeBase) -> None:
    res = predict(worked_kb, [["hello"]], PredictParams())
    assert res.fast_path and res.future_potentials == []
    a, b = res.predictions
    assert list(a) == FAST_KEYS
    assert a["potential"] == 2.333333333333333 and a["similarity"] == 0.5
    assert a["evidence"] == 1 / 3 and a["future"] == ["there", "foo"]
    assert a["present"] == ["hello"] and a["fragmentation"] == 0
    assert b["potential"] == 2.2 and b["similarity"] == 0.3333333333333333
    assert b["future"] == ["world", "foo", "bar", "baz"]


def test_fast_path_only_first_token() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["a"], ["b"], ["c"]])
    assert predict(kb, [["b"]], PredictParams()).predictions == []
    assert len(predict(kb, [["b"], ["c"]], PredictParams()).predictions) == 1


def test_partial_events_snr_uses_flat_extras() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["a", "b"], ["c", "d"]])
    (p,) = predict(kb, [["a", "x"], ["c", "y"]], PredictParams()).predictions
    assert p["similarity"] == 0.5 and p["matches"] == ["a", "c"]
    assert p["present"] == [["a", "b"], ["c", "d"]]
    assert p["missing"] == [["b"], ["d"]] and p["extras"] == [["x"], ["y"]]
    assert p["snr"] == 0.3333333333333333 and p["fragmentation"] == 1.0
    assert p["evidence"] == 0.5 and p["confidence"] == 0.5
    assert p["itfdf_similarity"] == 0.7071067811865475
    assert p["potential"] == 1.5404401145198807


def test_threshold_zero_keeps_non_matching() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["p"], ["q"], ["r"]])
    (p,) = predict(kb, [["u1"], ["u2"]], PredictParams(recall_threshold=0.0)).predictions
    assert p["similarity"] == 0.0 and p["matches"] == []
    assert p["present"] == [["p"], ["q"], ["r"]] and p["missing"] == [["p"], ["q"], ["r"]]
    assert p["extras"] == [["u1"], ["u2"]]
    assert p["snr"] == -1.0 and p["fragmentation"] == -1.0
    assert p["potential"] == 0.0 and p["bayesian_posterior"] == 0.0
    assert predict(kb, [["u1"], ["u2"]], PredictParams()).predictions == []


def test_character_mode() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["hello"], ["world"], ["foo"]])
    (p,) = predict(kb, [["hello"], ["word"]], PredictParams(use_token_matching=False)).predictions
    assert p["similarity"] == 0.8 and p["matches"] == ["hello"]
    assert p["future"] == [["world"], ["foo"]] and p["extras"] == [[], ["word"]]
    assert p["snr"] == 0.3333333333333333 and p["potential"] == 2.4444444444444446


def test_fuzzy_tokens() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["apple", "banana", "cherry", "date", "elderberry"]])
    params = PredictParams(fuzzy_token_threshold=0.85)
    (p,) = predict(kb, [["apple", "bannana", "chery"]], params).predictions
    assert p["similarity"] == 0.25
    assert p["matches"] == ["apple", "bannana", "chery"]
    assert p["anomalies"] == [
        {"observed": "bannana", "expected": "banana", "similarity": 0.923076923076923},
        {"observed": "chery", "expected": "cherry", "similarity": 0.9090909090909091},
    ]
    assert p["missing"] == [["banana", "cherry", "date", "elderberry"]]
    assert p["extras"] == [["bannana", "chery"]]
    assert (p["evidence"], p["confidence"], p["snr"]) == (0.6, 0.6, 1.0)


def test_fixup_quirk_pulls_previous_event() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["a", "b"], ["b", "c"], ["d"]])
    (p,) = predict(kb, [["b"], ["c"]], PredictParams()).predictions
    assert p["present"] == [["a", "b"], ["b", "c"]] and p["past"] == []
    assert p["missing"] == [["a"], []]


def test_lcs_vs_blocks_quirk() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["b", "c", "d", "a", "a", "c", "c"]])
    (p,) = predict(kb, [["d"], ["c"]], PredictParams()).predictions
    assert p["similarity"] == 4 / 9 and p["matches"] == ["c"]


def test_threshold_boundary_rounding() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["a"], ["b"], ["x"], ["y"]])
    (p,) = predict(
        kb, [["a"], ["b"]], PredictParams(recall_threshold=0.6666666666666665)
    ).predictions
    assert p["similarity"] == 0.6666666666666665
    assert (
        predict(kb, [["a"], ["b"]], PredictParams(recall_threshold=0.6666666666666666)).predictions
        == []
    )


def test_pruning_and_ranking_are_deterministic() -> None:
    kb = KnowledgeBase("n")
    for i in range(40):
        learn(kb, [["a"], ["b"], [f"z{i}"]])
    params = PredictParams(max_predictions=5)
    res = predict(kb, [["a"], ["b"]], params)
    assert len(res.predictions) == 5
    names = [p["name"] for p in res.predictions]
    assert names == sorted(names)  # all tie: ordered by name
    assert all("_pre_potential" not in p for p in res.predictions)
    # Ensemble statistics use the 15 pruned candidates.
    assert res.predictions[0]["pattern_probability"] == 1 / 15


def test_session_rank_sort_algo_honoured(worked_kb: KnowledgeBase) -> None:
    res = predict(
        worked_kb, [["hello"], ["foo"]], PredictParams(rank_sort_algo="predictive_information")
    )
    assert res.predictions[0]["name"] == name_of([["hello", "world"], ["foo"], ["bar", "baz"]])


def test_affinity_weighting() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["a"], ["b"], ["c"]], [{"joy": 2.0}])
    (p,) = predict(kb, [["a"], ["b"]], PredictParams(affinity_emotive="joy")).predictions
    w = 2.0 / 1 + 0.01  # |affinity| / symbol frequency + epsilon, state symbols only
    assert p["weighted_similarity"] == 2.0 * (2 * w) / (2 * w + 2 * w)
    assert p["weighted_evidence"] == 1.0 and p["weighted_confidence"] == 1.0
    assert p["weighted_snr"] == 1.0
    assert p["potential"] == (1.0 + 1.0) * 1.0 + p["itfdf_similarity"] + 1.0


def test_empty_state() -> None:
    kb = KnowledgeBase("n")
    assert predict(kb, [], PredictParams()).predictions == []
    assert predict(kb, [["a"], ["b"]], PredictParams()).predictions == []


def test_filter_pipeline_length_stage() -> None:
    kb = KnowledgeBase("n")
    learn(kb, [["a"], ["b"]])
    learn(kb, [["a"], ["b"], ["c"], ["d"], ["e"], ["f"]])
    res = predict(kb, [["a"], ["b"]], PredictParams(filter_pipeline=("length",)))
    assert [p["sequence"] for p in res.predictions] == [[["a"], ["b"]]]
    assert (
        predict(kb, [["a"], ["b"]], PredictParams(filter_pipeline=("rapidfuzz",))).predictions == []
    )


# --- exactness of the index pruning --------------------------------------------------

VOCAB = [f"s{i}" for i in range(12)]
event = st.lists(st.sampled_from(VOCAB), min_size=1, max_size=4).map(sorted)
pattern = st.lists(event, min_size=1, max_size=5).filter(lambda es: sum(map(len, es)) >= 2)
#: KATO's way: every pattern scored (no index, no LCS bound, no kernel).
BRUTE_FORCE = MatcherOptions(exhaustive=True)


@settings(max_examples=150, deadline=None)
@given(
    patterns=st.lists(pattern, min_size=1, max_size=25),
    stm=st.lists(event, min_size=1, max_size=4),
    thr=st.sampled_from(
        [0.0, 0.05, 0.1, 0.2, 0.3, 0.3333333333333333, 0.5, 0.6666666666666665, 0.8, 1.0]
    ),
    maxp=st.sampled_from([1, 3, 100]),
)
def test_pruning_is_exact(
    patterns: list[list[list[str]]],
    stm: list[list[str]],
    thr: float,
    maxp: int,
) -> None:
    kb = KnowledgeBase("n")
    for p in patterns:
        learn(kb, p)
    params = PredictParams(recall_threshold=thr, max_predictions=maxp)
    for c_kernel in (None, False):
        fast = predict(kb, stm, params, MatcherOptions(c_kernel=c_kernel))
        assert fast == predict(kb, stm, params, BRUTE_FORCE)


def test_indexed_pruning_kicks_in() -> None:
    """Many candidates, few slots: the bound-ordered build must equal brute force."""
    kb = KnowledgeBase("n")
    import random

    rng = random.Random(7)
    voc = [f"v{i}" for i in range(15)]
    for _ in range(300):
        learn(kb, [sorted(rng.sample(voc, rng.randint(1, 5))) for _ in range(rng.randint(2, 4))])
    for maxp in (1, 5, 20):
        for _ in range(10):
            stm = [sorted(rng.sample(voc, rng.randint(1, 4))) for _ in range(rng.randint(1, 4))]
            params = PredictParams(max_predictions=maxp)
            brute = predict(kb, stm, params, BRUTE_FORCE)
            for c_kernel in (False, None):  # the bound-ordered build, then the process's
                assert predict(kb, stm, params, MatcherOptions(c_kernel=c_kernel)) == brute
