"""Predictions (and future potentials) kept as the JSON bytes every store and output writes
(the C kernel's output).

Why: at KATO's default 100 predictions, an observe's predictions are ~3,500 Python
containers built only to be encoded (output record, session lists) and freed.  With
``MatcherOptions(encoded=True)`` the kernel path writes the JSON itself
(``kernel.predictions_json``) and returns an :class:`EncodedPredictions`: a read-only
sequence whose bytes are exactly what ``orjson.dumps(list_of_dicts, option=OPT_SORT_KEYS)``
gives for the dicts the same path builds without it (tests/core/test_encoded.py).  The stream
layer splices the bytes into its records (``stream/codecs.py``); anything that reads an item
gets it decoded once, on first access.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import orjson

__all__ = ["EncodedPredictions", "own"]


class EncodedPredictions(Sequence[dict[str, Any]]):
    """A prediction list, or a future-potentials list, as its JSON bytes (``json``), decoded
    only when an item is read.

    Immutable, so a session state and an output record can share one.  Equal to another
    one with the same bytes, and to a list equal to its decoded items.
    """

    __slots__ = ("_items", "_n", "json")

    def __init__(self, json: bytes, n: int) -> None:
        self.json = json
        self._n = n
        self._items: list[dict[str, Any]] | None = None

    def decoded(self) -> list[dict[str, Any]]:
        """The predictions as dicts (decoded once; the same list on every call)."""
        if self._items is None:
            items = orjson.loads(self.json)
            if not isinstance(items, list) or len(items) != self._n:
                raise ValueError("encoded predictions: not a JSON list of their length")
            self._items = items
        return self._items

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self.decoded()[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.decoded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EncodedPredictions):
            return self.json == other.json
        if isinstance(other, list):  # different lengths: unequal without decoding
            return len(other) == self._n and self.decoded() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EncodedPredictions({self._n} predictions, {len(self.json)} bytes)"


def own(items: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    """A copy a session state may keep: ``list(items)``, or ``items`` itself when encoded
    (immutable; copying would decode it)."""
    return items if isinstance(items, EncodedPredictions) else list(items)
