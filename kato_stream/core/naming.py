"""Pattern and vector names, byte-exact with KATO (spec §1.3, §1.4).

Both names hash a *printed* form, so they must be produced by the very printers KATO
uses: Python's ``repr`` of a list of lists of ``str`` for patterns, numpy's default
array printing for vectors (including its 8-digit precision and the ``...``
summarisation above 1000 elements, which makes some distinct vectors collide).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

PATTERN_PREFIX = "PTRN|"
VECTOR_PREFIX = "VCTR|"

# numpy's documented defaults; pinned so a caller's np.set_printoptions cannot change names.
_PRINT_DEFAULTS: dict[str, object] = {
    "precision": 8,
    "threshold": 1000,
    "edgeitems": 3,
    "linewidth": 75,
    "suppress": False,
    "nanstr": "nan",
    "infstr": "inf",
    "sign": "-",
    "floatmode": "maxprec",
    "legacy": False,
}


def pattern_name(events: Iterable[Sequence[str]]) -> str:
    """Bare SHA-1 of ``str(list_of_lists)``: what KATO stores and predictions report."""
    data = [[str(s) for s in e] for e in events]
    return hashlib.sha1(str(data).encode("utf-8")).hexdigest()


def prefixed(name: str) -> str:
    """``PTRN|<hash>``: the form learn responses and ``auto_learned_pattern`` use."""
    return name if name.startswith(PATTERN_PREFIX) else PATTERN_PREFIX + name


def sum_vectors(vectors: Sequence[Sequence[float]]) -> npt.NDArray[np.float64]:
    """Element-wise sum of an observation's vectors (one vector -> itself).

    Raises ``ValueError`` for vectors of different lengths (KATO: numpy broadcast
    error, HTTP 500) or an empty list.
    """
    if not vectors:
        raise ValueError("no vectors to sum")
    lengths = {len(v) for v in vectors}
    if len(lengths) != 1:
        raise ValueError(f"vectors of different lengths in one observation: {sorted(lengths)}")
    acc = np.array(vectors[0], dtype=np.float64)
    for v in vectors[1:]:
        acc = acc + np.array(v, dtype=np.float64)
    return acc


def vector_text(values: Sequence[float] | npt.NDArray[np.float64]) -> str:
    """numpy's default ``str()`` of the float64 array (the hash input)."""
    arr = np.asarray(values, dtype=np.float64)
    with np.printoptions(**_PRINT_DEFAULTS):  # type: ignore[arg-type]
        return str(arr)


def vector_name(values: Sequence[float] | npt.NDArray[np.float64]) -> str:
    """``VCTR|`` + SHA-1 of numpy's printed form of the (already summed) vector."""
    digest = hashlib.sha1(vector_text(values).encode("utf-8")).hexdigest()
    return VECTOR_PREFIX + digest
