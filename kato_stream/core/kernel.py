"""Optional C kernel (``_kernel.c``) for the full path, with a pure-Python fallback.

The kernel computes, for int-coded patterns against one int-coded state, exactly what
``predictor.matching.pre_potential`` needs (spec §5.3 C, §5.4): the difflib-compatible blocks of
(P, state), ``M = len(matches)``, the number of blocks, ``E = len(extras_flat)`` from
(present_flat, full state) and the length of the present events after the fix-up
(:func:`scan` also computes the exact token LCS and the similarity test for every pattern).
For the pruned survivors it computes the event split (:func:`survivors`), the ensemble
statistics (:func:`ensemble`, :func:`future_groups`) and the output lists (:func:`lists`,
:func:`futures`) used by ``predictor.kernel_path``, with the generic path's IEEE
operations in the same order.

``ENABLED`` is the process's matcher, fixed at import: ``False`` when the extension could
not be built or imported, or when the environment sets ``KATO_STREAM_PURE_PYTHON=1``.
Nothing assigns it; a caller that wants a given path (tests comparing both, the benchmark)
passes ``predictions.MatcherOptions(c_kernel=...)`` to ``predict``.

The extension is optional at install time (``setup.py``), so a build without a compiler
succeeds and runs the pure-Python matcher, about 100x slower.  A worker therefore refuses to
start without it (:func:`require`) unless ``KATO_STREAM_PURE_PYTHON=1`` asks for that matcher,
and workers and gateways log which one runs (:func:`log_status`; the gauge
``kato_kernel_enabled`` says the same).  To see a process without the kernel, hide the module
before anything imports it: ``sys.modules["kato_stream.core._kernel"] = None``
(tests/core/test_kernel.py starts a worker that way).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .prefilter import PatternIndex

log = logging.getLogger(__name__)

#: The setting (``Settings.pure_python``) that asks for the pure-Python matcher.
PURE_PYTHON_ENV = "KATO_STREAM_PURE_PYTHON"

_ext: Any
#: Why the extension could not be imported ("" when it was).
IMPORT_ERROR = ""
try:
    from . import _kernel as _ext
except ImportError as exc:  # not compiled (no compiler at install time): pure Python
    _ext = None
    IMPORT_ERROR = str(exc) or type(exc).__name__

AVAILABLE: bool = _ext is not None
ENABLED: Final[bool] = AVAILABLE and os.environ.get(PURE_PYTHON_ENV, "").strip().lower() not in (
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


class KernelUnavailable(SystemExit):
    """A worker would run the pure-Python matcher without being asked to.

    A :class:`SystemExit` carrying the message, so ``kato-stream worker`` stops before it
    connects to anything and exits with status 1, printing the message without a traceback.
    """


def status() -> str:
    """One line: which matcher this process runs, and why."""
    if enabled():
        return f"C kernel enabled ({getattr(_ext, '__file__', '_kernel')})"
    if AVAILABLE:
        return (
            f"C kernel built but turned off ({PURE_PYTHON_ENV}=1): running the pure-Python "
            "matcher, about 100x slower predictions"
        )
    return (
        f"C kernel not available ({IMPORT_ERROR}): running the pure-Python matcher, "
        "about 100x slower predictions"
    )


def require(allow_pure_python: bool, role: str = "worker") -> None:
    """Raise :class:`KernelUnavailable` unless the kernel runs here or the pure-Python
    matcher is explicitly allowed (``KATO_STREAM_PURE_PYTHON=1``)."""
    if enabled() or allow_pure_python:
        return
    raise KernelUnavailable(
        f"kato-stream {role}: refusing to start: the C kernel (kato_stream.core._kernel) is not "
        f"available ({IMPORT_ERROR or 'turned off'}), and the pure-Python matcher is about 100x "
        "slower per prediction. Reinstall kato-stream where a C compiler can build "
        "kato_stream/core/_kernel.c (the image's builder stage does), or set "
        f"{PURE_PYTHON_ENV}=1 to run without it."
    )


def log_status(role: str) -> bool:
    """Log at a process's start which matcher runs (a warning without the kernel); returns
    whether the kernel runs."""
    on = enabled()
    if on:
        log.info("kato-stream %s: %s", role, status())
    else:
        log.warning("kato-stream %s: %s", role, status())
    return on


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
    """``predictor.matching.pre_potential`` for arrays, with the same IEEE operations in the same order."""
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


#: Columns of :func:`survivors`' int32 rows.
SV_M, SV_E, SV_NB, SV_START, SV_E2, SV_PSTART, SV_PEND = range(7)
#: Columns of :func:`ensemble`'s float64 rows.
EN_CONF, EN_ENT, EN_NENT, EN_GNENT, EN_TFIDF = range(5)


def survivors(
    idx: PatternIndex, sel: I64, state: I32
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
    """Per selected pattern one row (M, E, blocks, first present event, first future event,
    present flat start, present flat end), and a flag per token code set for every token of
    some present range."""
    assert _ext is not None
    flat, offs, evlen, evoffs = idx.coded()
    info = np.empty((int(sel.size), 7), dtype=np.int32)
    uflag = np.zeros(idx.n_codes, dtype=np.uint8)
    _ext.survivors(
        flat, offs, evlen, evoffs, np.ascontiguousarray(sel, dtype=np.int64), state, info, uflag
    )
    return info, uflag


def ensemble(
    idx: PatternIndex,
    sel: I64,
    info: npt.NDArray[np.int32],
    freq: I64,
    spc: F64,
    colmap: I32,
    n_cols: int,
    totals: tuple[int, int, int],
    log10_floor: float,
) -> tuple[F64, F64]:
    """The itfdf matrix (rows: survivors, columns: ``colmap``) and, per survivor, confluence,
    entropy, normalized and global normalized entropy and tfidf from its present tokens, in
    ``predictor.ensemble``'s operation order.  ``totals`` = (F, U, S)."""
    assert _ext is not None
    flat, offs, _evlen, _evoffs = idx.coded()
    n = int(sel.size)
    mat = np.zeros((n, n_cols))
    out = np.empty((n, 5))
    f_tot, u_tot, s_tot = totals
    _ext.ensemble(
        flat, offs, sel, info, freq, spc, colmap, mat, out, f_tot, u_tot, s_tot, log10_floor
    )
    return mat, out


def scan(
    idx: PatternIndex, state: I32, threshold: float, limit: int = 0
) -> tuple[I64, F64, I32, I32, I32, I32]:
    """Every pattern passing ``threshold`` (exact token LCS, ``predictor.candidates.passing``'s
    similarity and test): index, similarity, M, E, number of blocks, present length.

    With ``limit > 0`` patterns that provably cannot be among the ``limit`` best by
    ``_pre_potential`` (see ``_kernel.c``) may be left out.
    """
    assert _ext is not None
    flat, offs, evlen, evoffs = idx.coded()
    n = int(offs.size) - 1
    out_idx = np.empty(n, dtype=np.int64)
    out_sim = np.empty(n, dtype=np.float64)
    m = np.empty(n, dtype=np.int32)
    e = np.empty(n, dtype=np.int32)
    nb = np.empty(n, dtype=np.int32)
    plen = np.empty(n, dtype=np.int32)
    cutoff = threshold * 100.0 - 1e-6
    k: int = _ext.scan(
        flat,
        offs,
        evlen,
        evoffs,
        state,
        cutoff,
        threshold,
        max(0, limit),
        out_idx,
        out_sim,
        m,
        e,
        nb,
        plen,
    )
    return out_idx[:k], out_sim[:k], m[:k], e[:k], nb[:k], plen[:k]


def future_groups(
    idx: PatternIndex, sel: I64, e2: I32, freq: I64, sim: F64
) -> tuple[I32, F64, I32, I32]:
    """Future groups of the survivors (``predictor.ensemble.predictive_information``): per survivor
    its group (-1: empty future), and per group (numbered by first member) the weighted
    frequency sum (sequential, in member order), the member count and the first member."""
    assert _ext is not None
    flat, offs, evlen, evoffs = idx.coded()
    n = int(sel.size)
    gid = np.empty(n, dtype=np.int32)
    w = np.empty(n, dtype=np.float64)
    count = np.empty(n, dtype=np.int32)
    first = np.empty(n, dtype=np.int32)
    ng: int = _ext.future_groups(
        flat,
        offs,
        evlen,
        evoffs,
        sel,
        np.ascontiguousarray(e2, dtype=np.int32),
        freq,
        np.ascontiguousarray(sim, dtype=np.float64),
        gid,
        w,
        count,
        first,
    )
    return gid, w[:ng], count[:ng], first[:ng]


Lists = tuple[
    list[str],
    list[list[str]],
    list[list[str]],
    list[list[str]],
    list[list[str]],
    list[list[str]],
    list[list[str]],
]


def lists(
    idx: PatternIndex,
    sel: I64,
    info: npt.NDArray[np.int32],
    state: I32,
    stm_lens: Sequence[int],
    state_tokens: list[str],
) -> list[Lists]:
    """Per selected pattern (matches, past, present, missing, extras, sequence, future), as
    ``predictor.matching.build_candidate`` builds them, from the blocks and ``survivors()`` rows."""
    assert _ext is not None
    out: list[Lists] = _ext.lists(
        *_rows_args(idx, sel, info, state, stm_lens), idx.token_list, state_tokens
    )
    return out


def _rows_args(
    idx: PatternIndex, sel: I64, info: npt.NDArray[np.int32], state: I32, stm_lens: Sequence[int]
) -> tuple[Any, ...]:
    """The arguments :func:`lists` and :func:`predictions_json` share: the coded patterns,
    the selected rows with their ``survivors()`` rows, the state and the STM's event sizes."""
    flat, offs, evlen, evoffs = idx.coded()
    return (
        flat,
        offs,
        evlen,
        evoffs,
        np.ascontiguousarray(sel, dtype=np.int64),
        np.ascontiguousarray(info, dtype=np.int32),
        state,
        np.asarray(stm_lens, dtype=np.int32),
    )


#: ``predictions_json`` field kinds: the seven lists of :func:`lists`, in its order, then a
#: value of the table and a constant.
(
    J_MATCHES,
    J_PAST,
    J_PRESENT,
    J_MISSING,
    J_EXTRAS,
    J_SEQUENCE,
    J_FUTURE,
    J_COLUMN,
    J_CONST,
) = range(9)

#: One field of ``predictions_json``'s layout: (prefix bytes, kind, table column or bytes).
JsonField = tuple[bytes, int, int | bytes | None]


def predictions_json(
    idx: PatternIndex,
    sel: I64,
    info: npt.NDArray[np.int32],
    state: I32,
    stm_lens: Sequence[int],
    state_json: list[bytes],
    table: bytes,
    ncol: int,
    layout: list[JsonField],
) -> bytes:
    """The JSON array of one object per selected pattern, written field by field in
    ``layout`` order: the lists of :func:`lists` (tokens as ``idx.token_json()``, the state's
    as ``state_json``), values of ``table`` (orjson bytes of ``ncol`` lists of one value per
    selected pattern: a value's text is copied, never re-formatted) or constants."""
    assert _ext is not None
    out: bytes = _ext.predictions_json(
        *_rows_args(idx, sel, info, state, stm_lens),
        idx.token_json(),
        state_json,
        table,
        ncol,
        layout,
    )
    return out


def futures_json(
    idx: PatternIndex, sel: I64, e2: I32, table: bytes, ncol: int, layout: list[JsonField]
) -> bytes:
    """The JSON array of one object per selected pattern, as :func:`predictions_json` writes
    them, from a layout of ``J_FUTURE`` (``events[e2:]``, tokens as ``idx.token_json()``),
    ``J_COLUMN`` (values of ``table``) and ``J_CONST`` fields only."""
    assert _ext is not None
    out: bytes = _ext.futures_json(
        *_futures_args(idx, sel, e2), idx.token_json(), table, ncol, layout
    )
    return out


def _futures_args(idx: PatternIndex, sel: I64, e2: I32) -> tuple[Any, ...]:
    """The pattern buffers, ``sel`` and ``e2`` as :func:`futures` and :func:`futures_json`
    pass them to the kernel."""
    flat, offs, evlen, evoffs = idx.coded()
    return (
        flat,
        offs,
        evlen,
        evoffs,
        np.ascontiguousarray(sel, dtype=np.int64),
        np.ascontiguousarray(e2, dtype=np.int32),
    )


def futures(idx: PatternIndex, sel: I64, e2: I32) -> list[list[list[str]]]:
    """``[list(e) for e in events[e2:]]`` per selected pattern."""
    assert _ext is not None
    out: list[list[list[str]]] = _ext.futures(*_futures_args(idx, sel, e2), idx.token_list)
    return out
