"""Matcher parity: difflib (no junk, no autojunk) blocks/opcodes and true LCS."""

from __future__ import annotations

import difflib

from hypothesis import given, settings
from hypothesis import strategies as st

from kato_stream.core.matcher import (
    diff_missing_extras,
    lcs_length,
    matching_blocks,
    opcodes,
    token_similarity,
)

tokens = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "ab", ""]), max_size=30)
long_tokens = st.lists(st.sampled_from([f"t{i}" for i in range(6)]), min_size=150, max_size=260)


def _lcs_dp(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@settings(max_examples=400, deadline=None)
@given(tokens, tokens)
def test_blocks_and_opcodes_equal_difflib(a: list[str], b: list[str]) -> None:
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    assert matching_blocks(a, b) == [tuple(m) for m in sm.get_matching_blocks()]
    assert opcodes(a, b) == sm.get_opcodes()


@settings(max_examples=30, deadline=None)
@given(long_tokens, long_tokens)
def test_no_autojunk_on_long_sequences(a: list[str], b: list[str]) -> None:
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    assert matching_blocks(a, b) == [tuple(m) for m in sm.get_matching_blocks()]


@settings(max_examples=300, deadline=None)
@given(tokens, tokens)
def test_lcs_is_true_lcs(a: list[str], b: list[str]) -> None:
    assert lcs_length(a, b) == _lcs_dp(a, b)


def test_lcs_vs_blocks_quirk() -> None:
    """Spec §5.3 C: similarity uses the true LCS, matches come from greedy blocks."""
    p, s = ["b", "c", "d", "a", "a", "c", "c"], ["d", "c"]
    assert lcs_length(p, s) == 2
    assert token_similarity(2, 9) == 2 * 2 / 9
    blocks = matching_blocks(p, s)[:-1]
    assert [s[j : j + n] for _i, j, n in blocks] == [["c"]]


def test_similarity_rounding_order() -> None:
    assert token_similarity(2, 6) == 0.6666666666666665
    assert token_similarity(1, 3) == 0.6666666666666665
    assert token_similarity(2, 5) == 0.8
    assert token_similarity(0, 0) == 0.0


def test_flat_missing_extras_against_whole_state() -> None:
    missing, extras = diff_missing_extras(["a", "b", "c", "d"], ["x", "a", "c", "y"])
    assert missing == ["b", "d"]
    assert extras == ["x", "y"]
