"""Optional C kernel (``_kernel.c``) for the full path's pruning, with a pure-Python fallback.

The kernel computes, for int-coded patterns against one int-coded state, exactly what
``predictions._pre_potential`` needs (spec §5.3 C, §5.4): the difflib-compatible blocks of
(P, state), ``M = len(matches)``, the number of blocks, ``E = len(extras_flat)`` from
(present_flat, full state) and the length of the present events after the fix-up.  The
float arithmetic stays in numpy (:func:`pre_potentials`), in ``_pre_potential``'s order.

``ENABLED`` selects the path: it is ``False`` when the extension could not be built or
imported, or when the environment sets ``KATO_STREAM_PURE_PYTHON=1``; tests flip it to
compare both paths.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .prefilter import PatternIndex

_ext: Any
try:
    from . import _kernel as _ext
except ImportError:  # not compiled (no compiler at install time): pure Python
    _ext = None

AVAILABLE: bool = _ext is not None
ENABLED: bool = AVAILABLE and os.environ.get("KATO_STREAM_PURE_PYTHON", "").strip().lower() not in (
    "1",
    "true",
    "yes",
    "on",
)

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Block = tuple[int, int, int]


def enabled() -> bool:
    return ENABLED and _ext is not None


def blocks(a: Sequence[int], b: Sequence[int]) -> list[Block]:
    """``get_matching_blocks()`` (sentinel included) of two int sequences, via the kernel."""
    if _ext is None:
        raise RuntimeError("kato_stream.core._kernel is not available")
    out: list[Block] = _ext.blocks(np.asarray(a, dtype=np.int32), np.asarray(b, dtype=np.int32))
    return out


def state_codes(idx: PatternIndex, state: Sequence[str]) -> I32:
    """The state as int codes: pattern tokens keep theirs, unknown tokens get unused ones."""
    return np.frombuffer(idx.encode(list(state)).encode("utf-32-le"), dtype=np.uint32).astype(
        np.int32
    )


def prepot_inputs(idx: PatternIndex, sel: I64, state: I32) -> tuple[I32, I32, I32, I32]:
    """Per selected pattern: M, E, number of blocks, present-events length."""
    assert _ext is not None
    flat, offs, evlen, evoffs = idx.coded()
    n = int(sel.size)
    m = np.empty(n, dtype=np.int32)
    e = np.empty(n, dtype=np.int32)
    nb = np.empty(n, dtype=np.int32)
    plen = np.empty(n, dtype=np.int32)
    _ext.prepot(
        flat, offs, evlen, evoffs, np.ascontiguousarray(sel, dtype=np.int64), state, m, e, nb, plen
    )
    return m, e, nb, plen


def pre_potentials(m: I32, e: I32, nb: I32, plen: I32, length: I64) -> F64:
    """``_pre_potential`` for arrays, with the same IEEE operations in the same order."""
    mf = m.astype(np.float64)
    ef = e.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        evidence = np.where(length > 0, mf / length, 0.0)
        confidence = np.where(plen > 0, mf / plen, 0.0)
        den = 2.0 * mf + ef
        snr = np.where(den > 0, (2.0 * mf - ef) / den, 0.0)
        frag = (nb - 1).astype(np.float64)
        fc = np.where(frag == -1, 0.0, 1.0 / (frag + 1))
    out: F64 = (evidence + confidence) * snr + fc
    return out


def blocks_batch(idx: PatternIndex, sel: Sequence[int], state: I32) -> list[list[Block]]:
    """Merged blocks (sentinel excluded) of each selected pattern against the state."""
    assert _ext is not None
    flat, offs, _evlen, _evoffs = idx.coded()
    out: list[list[Block]] = _ext.blocks_batch(flat, offs, np.asarray(sel, dtype=np.int64), state)
    return out
