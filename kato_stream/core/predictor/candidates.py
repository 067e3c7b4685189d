"""Which patterns become candidates of the full path, cut to ``3*max_predictions``.

Why a module of its own: KATO scores every pattern (spec §5.3 A/B) and keeps the best
``3*max_predictions`` by ``pre_potential`` (§5.5.1).  Doing exactly that is the reference
(``MatcherOptions(exhaustive=True)``); in token mode without fuzzy matching or filters the
inverted index (:mod:`..prefilter`) skips the patterns whose LCS bound cannot reach the
threshold and builds the rest best bound first, or the C kernel (:func:`kernel_select`)
scans every pattern in one pass.  All three select the same candidates (property tests
against brute force in tests/core/test_predictions.py and test_kernel.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable

import numpy as np
import numpy.typing as npt
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from .. import kernel
from ..knowledge import KnowledgeBase, PatternRecord
from ..matcher import index_b
from ..prefilter import PatternIndex, candidate_indices, pattern_index
from .matching import Candidate, build_candidate, passes, pre_potential, similarity
from .params import MatcherOptions, PredictParams

__all__ = ["candidates_indexed", "kernel_select", "passing", "select_candidates"]

F64 = npt.NDArray[np.float64]


def _pool(
    kb: KnowledgeBase, state: list[str], params: PredictParams, exhaustive: bool
) -> Iterable[PatternRecord]:
    """The patterns to score: the filter pipeline's, the index's or all of them."""
    if params.filter_pipeline:
        from ..filters import run_pipeline

        return run_pipeline(kb, state, params)
    if params.use_token_matching and not exhaustive:
        return candidate_indices(kb, state, float(params.recall_threshold))
    return kb.patterns.values()


def select_candidates(
    kb: KnowledgeBase,
    stm: list[list[str]],
    state: list[str],
    params: PredictParams,
    options: MatcherOptions,
) -> list[Candidate]:
    """Candidates that pass the threshold, already cut to ``3*max_predictions`` (§5.5.1)."""
    threshold = float(params.recall_threshold)
    token_mode = params.use_token_matching
    fuzzy = float(params.fuzzy_token_threshold or 0.0)
    limit = params.max_predictions * 3
    indexed = token_mode and fuzzy <= 0.0 and not params.filter_pipeline and bool(kb.patterns)
    if indexed and not options.exhaustive:
        try:
            return candidates_indexed(kb, stm, state, threshold, limit, options.runs_kernel())
        except ValueError:  # more distinct tokens than code points: brute force
            pass
    state_str = " ".join(state)
    out: list[Candidate] = []
    b2j = index_b(state)
    for rec in _pool(kb, state, params, options.exhaustive):
        sim = similarity(rec, state, state_str, token_mode)
        if not passes(sim, threshold):
            continue
        c = build_candidate(rec, sim, state, stm, threshold, fuzzy, b2j)
        if c is not None:
            out.append(c)
    if len(out) > limit:
        out = sorted(out, key=lambda c: (-pre_potential(c), c.rec.name))[:limit]
    return out


def passing(
    idx: PatternIndex, state: list[str], threshold: float
) -> tuple[npt.NDArray[np.intp], F64, F64, F64]:
    """Steps 1-2 of :func:`candidates_indexed`: (sel, lcs, lens, similarity) of passing
    patterns."""
    n_s = len(state)
    if threshold > 0.0:
        bound = idx.lcs_bounds(state)
        sel = np.flatnonzero((2.0 * bound) / (idx.lens + n_s) >= threshold - 1e-9)
    else:
        sel = np.arange(len(idx.records))
    if sel.size == 0:
        e = np.zeros(0)
        return sel, e, e, e
    enc = idx.encoded
    q = idx.encode(state)
    lcs = process.cdist(
        [q], [enc[i] for i in sel.tolist()], scorer=LCSseq.similarity, dtype=np.int32, workers=1
    )[0].astype(np.float64)
    lens = idx.lens[sel].astype(np.float64)
    total = lens + n_s
    sims = ((2.0 * lcs) / total) * 100.0 / 100.0
    ok = (sims * 100.0 >= threshold * 100.0 - 1e-6) & (sims >= threshold)
    return sel[ok], lcs[ok], lens[ok], sims[ok]


def candidates_indexed(
    kb: KnowledgeBase,
    stm: list[list[str]],
    state: list[str],
    threshold: float,
    limit: int,
    use_kernel: bool,
) -> list[Candidate]:
    """Token mode without fuzzy matching: same result as brute force, far less work.

    1. Symbol-count bound on LCS drops patterns that cannot reach the threshold.
    2. Exact LCS for the rest in one rapidfuzz ``cdist`` call on code-point strings.
    3. When more than ``limit`` pass, candidates are built in order of an upper bound
       on ``pre_potential`` (:func:`_top_by_bound`).
    With ``use_kernel`` the C kernel does steps 1-3 (:func:`_candidates_kernel`).
    """
    idx = pattern_index(kb)
    if use_kernel:
        return _candidates_kernel(idx, stm, state, threshold, limit)
    sel, lcs, lens, sims = passing(idx, state, threshold)
    if sel.size == 0:
        return []
    recs = idx.records
    b2j = index_b(state)
    if sel.size <= limit:
        out = []
        for i, sim in zip(sel.tolist(), sims.tolist(), strict=True):
            c = build_candidate(recs[i], sim, state, stm, threshold, 0.0, b2j)
            if c is not None:
                out.append(c)
        return out
    n_s = len(state)
    snr_ub = (3.0 * lcs - n_s) / (lcs + n_s)
    ub = (lcs / lens + 1.0) * np.maximum(snr_ub, 0.0) + 1.0 + 1e-9
    chosen = [recs[i] for i in sel.tolist()]
    return _top_by_bound(chosen, sims.tolist(), ub, state, stm, threshold, limit, b2j)


def _top_by_bound(
    chosen: list[PatternRecord],
    sims: list[float],
    ub: F64,
    state: list[str],
    stm: list[list[str]],
    threshold: float,
    limit: int,
    b2j: dict[Hashable, list[int]],
) -> list[Candidate]:
    """The top ``limit`` by (-pre_potential, name) of ``chosen`` (similarities ``sims``),
    built in order of the upper bounds ``ub`` (M <= L, confidence <= 1, E >= |S| - L,
    1/(frag+1) <= 1); building stops once the ``limit``-th best real value beats every
    remaining bound, so the result is exactly KATO's top ``limit`` (ties by name)."""
    order = np.argsort(-ub, kind="stable")
    kth: list[float] = []  # min-heap of the best `limit` pre-potentials built so far
    built: list[tuple[float, str, Candidate]] = []
    ub_l = ub.tolist()
    for pos in order.tolist():
        if len(kth) >= limit and kth[0] > ub_l[pos]:
            break  # nothing left can reach the top `limit` (bounds are sorted)
        c = build_candidate(chosen[pos], sims[pos], state, stm, threshold, 0.0, b2j)
        if c is None:
            continue
        pre = pre_potential(c)
        built.append((-pre, c.rec.name, c))
        if len(kth) < limit:
            heapq.heappush(kth, pre)
        elif pre > kth[0]:
            heapq.heapreplace(kth, pre)
    built.sort(key=lambda t: (t[0], t[1]))
    return [t[2] for t in built[:limit]]


def kernel_select(
    idx: PatternIndex,
    state: list[str],
    threshold: float,
    limit: int,
) -> tuple[kernel.I64, F64, npt.NDArray[np.int32], kernel.I32]:
    """:func:`candidates_indexed`'s pruned set with the C kernel: (sel, sims, E, state codes).

    One kernel pass over every pattern gives the exact token LCS (so the similarity and
    the threshold test of :func:`passing`) and, for the passing ones, M, E, block count and
    present length (leaving out patterns that provably cannot reach the top ``limit``);
    ``pre_potential`` is computed for them in numpy (same IEEE operations, same order)
    and the top ``limit`` by (-pre_potential, name) are kept.
    """
    q = kernel.state_codes(idx, state)
    sel, sims, m, e, nb, plen = kernel.scan(idx, q, threshold, limit)
    if threshold > 0.0:  # zero blocks: dropped (§5.3 C); impossible when LCS >= 1
        keep = np.flatnonzero(nb > 0)
        if keep.size < sel.size:
            sel, sims = sel[keep], sims[keep]
            m, e, nb, plen = m[keep], e[keep], nb[keep], plen[keep]
    if sel.size > limit:
        neg = -kernel.pre_potentials(m, e, nb, plen, idx.lens[sel])
        chosen = _top_k_by_name(neg, limit, sel, idx.records)
        sel, sims, e = sel[chosen], sims[chosen], e[chosen]
    return sel, sims, e, q


def _top_k_by_name(
    neg: F64, limit: int, sel: kernel.I64, recs: list[PatternRecord]
) -> npt.NDArray[np.intp]:
    """Positions of the ``limit`` smallest ``neg``, ties at the cut by pattern name."""
    if limit <= 0:
        return np.zeros(0, dtype=np.intp)
    kth = np.partition(neg, limit - 1)[limit - 1]
    better = np.flatnonzero(neg < kth)
    ties = np.flatnonzero(neg == kth)
    need = limit - better.size
    if ties.size > need:
        tl = sorted(ties.tolist(), key=lambda t: recs[int(sel[t])].name)[:need]
        ties = np.asarray(tl, dtype=np.intp)
    return np.concatenate([better, ties])


def _candidates_kernel(
    idx: PatternIndex, stm: list[list[str]], state: list[str], threshold: float, limit: int
) -> list[Candidate]:
    """:func:`candidates_indexed` with the C kernel: the same pruned set, cheaper.

    The survivors (:func:`kernel_select`) are built in Python, reusing the kernel's blocks
    and flat-extras count.
    """
    sel, sims, e, q = kernel_select(idx, state, threshold, limit)
    recs = idx.records
    sel_l = sel.tolist()
    blocks = kernel.blocks_batch(idx, sel_l, q)
    out: list[Candidate] = []
    for i, sim, bl, ne in zip(sel_l, sims.tolist(), blocks, e.tolist(), strict=True):
        c = build_candidate(recs[i], sim, state, stm, threshold, 0.0, None, bl, ne)
        if c is not None:
            out.append(c)
    return out
