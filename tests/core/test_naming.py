"""Pattern and vector names must be byte-exact with KATO (spec §1.3, §1.4; §12 items 1-2)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kato_stream.core.naming import (
    pattern_name,
    prefixed,
    sum_vectors,
    vector_name,
    vector_text,
)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([["a"], ["b"]], "76d7efca2e96cb5eeddf4e06ac96a0f424630135"),
        ([["alpha", "beta"], ["gamma"]], "6eb84eb27aa289bd8f87f211fcef57924895f987"),
        ([["it's", "x"], ["y"]], "0f17573ce0ed492cb3de405c48ab6c21c46d9eed"),
        # Recorded by KATO 3.10.1 (conformance s01 / s22).
        ([["hello"], ["world"], ["bar", "foo"]], "b9bb56867501bfbe32538a66ea97db3f3d0c6da1"),
        ([["solo"], ["pair"]], "8b1fa762b610fab15d4b1792b7eaced6a05796e8"),
    ],
)
def test_pattern_name_verified_hashes(events: list[list[str]], expected: str) -> None:
    assert pattern_name(events) == expected


def test_pattern_name_hashes_python_repr_not_json() -> None:
    events = [['a"b', "c'd", "e\\f", "tab\there", "é", "\x00"], ["both'\""]]
    text = "[['a\"b', \"c'd\", 'e\\\\f', 'tab\\there', 'é', '\\x00'], ['both\\'\"']]"
    assert str(events) == text
    assert pattern_name(events) == hashlib.sha1(text.encode("utf-8")).hexdigest()
    assert pattern_name(tuple(tuple(e) for e in events)) == pattern_name(events)


def test_pattern_name_keeps_order_duplicates_and_empty_strings() -> None:
    assert pattern_name([["a", "b"]]) != pattern_name([["b", "a"]])
    assert pattern_name([["a", "a"]]) != pattern_name([["a"]])
    assert pattern_name([["", "a"]]) == hashlib.sha1(b"[['', 'a']]").hexdigest()


@given(st.lists(st.lists(st.text(max_size=5), max_size=4), min_size=1, max_size=4))
def test_pattern_name_is_sha1_of_repr(events: list[list[str]]) -> None:
    assert pattern_name(events) == hashlib.sha1(repr(events).encode("utf-8")).hexdigest()


def test_prefixed() -> None:
    assert prefixed("abc") == "PTRN|abc"
    assert prefixed("PTRN|abc") == "PTRN|abc"


@pytest.mark.parametrize(
    ("values", "text", "name"),
    [
        ([1.0, 0.0, 0.0], "[1. 0. 0.]", "VCTR|9d58821e286eae6a77923d694a12ede7cbeabfbd"),
        ([0.1, 0.2, 0.3], "[0.1 0.2 0.3]", "VCTR|e09ff768f2b2a0f5d5e78932dc977709e8c35f57"),
        ([0.25, -0.5, 1.0], "[ 0.25 -0.5   1.  ]", None),
        ([1e-5, 1.0], "[1.e-05 1.e+00]", None),
        ([0.123456789, 2.0], "[0.12345679 2.        ]", None),
        # Recorded by KATO 3.10.1 (conformance s28).
        (
            [-0.1475, -0.9978, 0.4365, 0.3555],
            None,
            "VCTR|767f183a1c5f15d1d37d8682f17d7d4c7ad0f36a",
        ),
    ],
)
def test_vector_names(values: list[float], text: str | None, name: str | None) -> None:
    if text is not None:
        assert vector_text(values) == text
    got = vector_name(values)
    assert got == "VCTR|" + hashlib.sha1(vector_text(values).encode()).hexdigest()
    if name is not None:
        assert got == name


def test_vector_names_collide_at_print_precision() -> None:
    assert vector_name([0.1, 0.2, 0.30000000000000004]) == vector_name([0.1, 0.2, 0.3])


def test_long_vectors_summarised_above_1000_elements() -> None:
    a = [float(i) for i in range(1001)]
    b = list(a)
    b[500] = -7.0
    assert "..." in vector_text(a)
    assert vector_name(a) == vector_name(b)  # KATO quirk: same edges, same name
    c = a[:1000]
    assert "..." not in vector_text(c)


def test_wrapping_at_75_chars() -> None:
    text = vector_text([0.123456 * i for i in range(40)])
    lines = text.split("\n")
    assert len(lines) > 1
    assert all(len(line) <= 75 for line in lines)
    assert all(line.startswith(" ") for line in lines[1:])


def test_names_ignore_global_print_options() -> None:
    before = vector_name([0.123456789, 2.0])
    with np.printoptions(precision=3, linewidth=20):
        assert vector_name([0.123456789, 2.0]) == before


def test_sum_vectors() -> None:
    assert list(sum_vectors([[1.0, 2.0], [3.0, 4.0]])) == [4.0, 6.0]
    assert list(sum_vectors([[1.0, 2.0]])) == [1.0, 2.0]
    with pytest.raises(ValueError, match="different lengths"):
        sum_vectors([[1.0], [1.0, 2.0]])
