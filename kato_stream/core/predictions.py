"""KATO's predictor: candidate matching, per-pattern metrics, ensemble metrics, ranking.

Two paths, exactly as KATO 3.10.1 (spec §5): a single-symbol STM takes the fast path
(§5.7: candidates by first token, flat fields, its own formulas); anything longer takes
the full path (§5.3-5.6).  Every float is computed in KATO's evaluation order so JSON
output matches KATO's bit for bit where KATO itself is deterministic.

Deliberate deviations (DESIGN.md): ties are broken by pattern name, ``_pre_potential``
is not emitted, the session's ``rank_sort_algo`` is honoured, and ``future_potentials``
are not recomputed on the fast path (returned empty with ``fast_path=True``; the engine
substitutes the session's last value).

Speed: KATO scores every pattern.  Here an inverted index (symbol -> patterns) gives
each pattern an upper bound on its LCS with the state; patterns whose bound cannot
reach ``recall_threshold`` are skipped, which cannot change the output (proved by a
property test against brute force).  With the C kernel (``kernel.py``) the full path
(``_full_path_kernel``) runs end to end in C and numpy instead: one pass over all
patterns, ensemble statistics over the survivors, Python objects only for the returned
predictions; the generic path below stays the reference it is tested against.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from itertools import chain
from operator import add
from typing import Any

import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process
from rapidfuzz.distance import LCSseq

from . import kernel
from .config import RANK_SORT_ALGOS, EngineDefaults
from .knowledge import FirstTokenRanking, KnowledgeBase, PatternRecord, average_emotives
from .matcher import (
    diff_missing_extras,
    index_b,
    lcs_length,
    matching_blocks,
    token_similarity,
)
from .prefilter import PatternIndex, candidate_indices, pattern_index

#: Switch for the exactness property test (indexed path vs brute force).
USE_INDEX = True

RANK_KEYS = RANK_SORT_ALGOS  # every key a session may rank by


_DEFAULTS = EngineDefaults()


@dataclass(frozen=True)
class PredictParams:
    """Effective prediction parameters (the engine resolves session value vs default).

    The defaults are the process defaults (``EngineDefaults``); the two without one are
    session-only settings.  ``fast_path_token_matching`` is the *process* default: KATO's
    single-symbol path ignores the session's ``use_token_matching`` (spec §5.1).
    """

    recall_threshold: float = _DEFAULTS.recall_threshold
    max_predictions: int = _DEFAULTS.max_predictions
    use_token_matching: bool = _DEFAULTS.use_token_matching
    fuzzy_token_threshold: float = 0.0
    rank_sort_algo: str = _DEFAULTS.rank_sort_algo
    affinity_emotive: str | None = None
    filter_pipeline: tuple[str, ...] = _DEFAULTS.filter_pipeline
    length_min_ratio: float = _DEFAULTS.length_min_ratio
    length_max_ratio: float = _DEFAULTS.length_max_ratio
    jaccard_threshold: float = _DEFAULTS.jaccard_threshold
    jaccard_min_overlap: int = _DEFAULTS.jaccard_min_overlap
    minhash_threshold: float = _DEFAULTS.minhash_threshold
    minhash_bands: int = _DEFAULTS.minhash_bands
    minhash_rows: int = _DEFAULTS.minhash_rows
    minhash_num_hashes: int = _DEFAULTS.minhash_num_hashes
    fast_path_token_matching: bool = _DEFAULTS.use_token_matching


@dataclass
class PredictionResult:
    predictions: list[dict[str, Any]]
    future_potentials: list[dict[str, Any]] = field(default_factory=list)
    fast_path: bool = False


def predict(
    kb: KnowledgeBase, stm: Sequence[Sequence[str]], params: PredictParams
) -> PredictionResult:
    """Predictions for ``stm`` against ``kb`` (read-only; deterministic)."""
    state = [s for ev in stm for s in ev]
    if not state:
        return PredictionResult([], [], False)
    if len(state) == 1:
        return PredictionResult(_fast_path(kb, state[0], params), [], True)
    preds, fps = _full_path(kb, [list(ev) for ev in stm], state, params)
    return PredictionResult(preds, fps, False)


# ----------------------------------------------------------------------------------------
# shared helpers


def _affinity_weights(
    kb: KnowledgeBase, symbols: Iterable[str], emotive: str | None
) -> dict[str, float] | None:
    """w(t) = |affinity[t][emotive]| / symbol_freq[t] + 0.01, or 0.01 (spec §5.4 E)."""
    if not emotive:
        return None
    weights: dict[str, float] = {}
    for s in symbols:
        if s in weights:
            continue
        aff = abs(kb.affinity.get(s, {}).get(emotive, 0.0))
        freq = kb.symbol_freq.get(s, 0)
        weights[s] = aff / freq + 0.01 if freq > 0 and aff > 0 else 0.01
    return weights or None


def _wsum(weights: dict[str, float], tokens: Iterable[str]) -> float:
    return sum(weights.get(t, 0.0) for t in tokens)


def _rank(preds: list[dict[str, Any]], key: str, limit: int) -> list[dict[str, Any]]:
    """Top ``limit`` by ``key`` descending, ties by pattern name (our deterministic order).

    A ``None`` value (weighted_* without affinity; KATO answers 500) ranks last.
    """

    def k(p: dict[str, Any]) -> tuple[bool, float, str]:
        v = p.get(key)
        return (v is None, -(v if v is not None else 0.0), p["name"])

    return sorted(preds, key=k)[: max(0, limit)]


# ----------------------------------------------------------------------------------------
# fast path (§5.7)


def _first_token_ranking(kb: KnowledgeBase, symbol: str) -> list[PatternRecord]:
    """Patterns starting with ``symbol`` by (-unweighted fast-path potential, name).

    Cached in ``kb.caches.first_token`` per ``kb.version`` (and per ``patterns`` dict,
    which a clear replaces).
    """
    cache = kb.caches.first_token
    if cache is None or cache.version != kb.version or cache.patterns is not kb.patterns:
        cache = kb.caches.first_token = FirstTokenRanking(kb.version, kb.patterns)
    ranked = cache.by_symbol.get(symbol)
    if ranked is None:
        cands = kb.candidates_first_token(symbol)
        ranked = sorted(cands, key=lambda r: (-((1 / len(r.flat) + 1.0) * 1.0 + 1.0), r.name))
        cache.by_symbol[symbol] = ranked
    return ranked


def _fast_path(kb: KnowledgeBase, symbol: str, params: PredictParams) -> list[dict[str, Any]]:
    n_cands = len(kb.by_first_token.get(symbol, ()))
    if not n_cands:
        return []
    weights = None
    cands: list[PatternRecord]
    if not params.affinity_emotive and n_cands > params.max_predictions:
        # Unweighted potential is (1/n + 1.0) * 1.0 + 1.0: rank first, build only the top.
        # The order depends only on the patterns, so it is cached per KB version.
        cands = _first_token_ranking(kb, symbol)[: max(0, params.max_predictions)]
    else:
        cands = list(kb.candidates_first_token(symbol))
    if params.affinity_emotive:
        weights = _affinity_weights(
            kb, chain([symbol], (s for r in cands for s in r.flat)), params.affinity_emotive
        )
    out: list[dict[str, Any]] = []
    for rec in cands:
        flat = rec.flat
        n = len(flat)
        if params.fast_path_token_matching:
            similarity = 2.0 * 1 / (n + 1)
        else:
            similarity = fuzz.ratio(" ".join(flat), symbol) / 100.0
        evidence = 1 / n if n > 0 else 0.0
        confidence = 1.0
        snr = 1.0
        w_sim: float | None = None
        w_ev: float | None = None
        w_conf: float | None = None
        w_snr: float | None = None
        if weights:
            wm = weights.get(symbol, 0.0)
            wp = _wsum(weights, flat)
            den = wm + wp
            w_sim = 2.0 * wm / den if den > 0 else None
            w_ev = wm / wp if wp > 0 else 0.0
            w_conf = wm / wm if wm > 0 else 0.0
            w_snr = wm / (wm + 0.0) if wm > 0 else 0.0
        ev = w_ev if w_ev is not None else evidence
        cf = w_conf if w_conf is not None else confidence
        sn = w_snr if w_snr is not None else snr
        potential = (ev + cf) * sn + 1 / (0 + 1)
        out.append(
            {
                "name": rec.name,
                "pattern_data": [list(e) for e in rec.events],
                "length": rec.length,
                "frequency": rec.frequency if rec.frequency else 1,
                "emotives": average_emotives(rec.emotives) if rec.emotives else {},
                "matches": [symbol],
                "missing": [],
                "present": [symbol],
                "past": [],
                "future": list(flat[1:]),
                "extras": [],
                "similarity": similarity,
                "evidence": evidence,
                "confidence": confidence,
                "snr": snr,
                "fragmentation": 0,
                "anomalies": [],
                "weighted_similarity": w_sim,
                "weighted_evidence": w_ev,
                "weighted_confidence": w_conf,
                "weighted_snr": w_snr,
                "potential": potential,
            }
        )
    return _rank(out, "potential", params.max_predictions)


# ----------------------------------------------------------------------------------------
# full path (§5.3-5.6)


@dataclass
class _Cand:
    rec: PatternRecord
    similarity: float
    matches: list[str]
    anomalies: list[dict[str, Any]]
    n_blocks: int
    past: list[list[str]]
    present: list[list[str]]
    future: list[list[str]]
    missing: list[list[str]]
    extras: list[list[str]]
    evidence: float
    confidence: float
    snr: float
    fragmentation: float
    w_sim: float | None = None
    w_ev: float | None = None
    w_conf: float | None = None
    w_snr: float | None = None
    present_flat: list[str] = field(default_factory=list)


def _similarity(rec: PatternRecord, state: list[str], state_str: str, token_mode: bool) -> float:
    if token_mode:
        return token_similarity(lcs_length(rec.flat, state), len(rec.flat) + len(state))
    return float(fuzz.ratio(" ".join(rec.flat), state_str)) / 100.0


def _passes(similarity: float, threshold: float) -> bool:
    """rapidfuzz's cutoff (score >= thr*100 - 1e-6) then KATO's inclusive test."""
    return similarity * 100.0 >= threshold * 100.0 - 1e-6 and similarity >= threshold


def _build_candidate(
    rec: PatternRecord,
    similarity: float,
    state: list[str],
    stm: list[list[str]],
    threshold: float,
    fuzzy: float,
    b2j: dict[Hashable, list[int]] | None = None,
    blocks: list[tuple[int, int, int]] | None = None,
    n_extras_flat: int | None = None,
) -> _Cand | None:
    """One prediction's per-pattern part (§5.3 C/D, §5.4), or None when dropped.

    ``blocks`` (sentinel excluded) and ``n_extras_flat`` may come from the C kernel,
    which computes exactly what ``matching_blocks``/``diff_missing_extras`` would.
    """
    pattern = rec.flat
    if blocks is None:
        if b2j is None:
            b2j = index_b(state)
        blocks = matching_blocks(pattern, state, b2j)[:-1]
    nb = len(blocks)
    anomalies: list[dict[str, Any]] = []
    matches: list[str] = []
    fuzzy_map: dict[str, tuple[str, float]] = {}
    if fuzzy > 0.0:
        plist = list(pattern)
        for st in state:
            best = process.extractOne(st, plist, scorer=fuzz.ratio, score_cutoff=fuzzy * 100)
            if best is None:
                continue
            ptok = best[0]
            ratio = float(best[1]) / 100.0
            fuzzy_map[st] = (ptok, ratio)
            matches.append(st)
            if st != ptok:
                anomalies.append({"observed": st, "expected": ptok, "similarity": ratio})
    else:
        for _i, j, n in blocks:
            matches.extend(state[j : j + n])

    if nb >= 2:
        i0, _j0, _n0 = blocks[0]
        i1, _j1, n1 = blocks[-1]
        past_flat = pattern[:i0]
        present_flat = pattern[i0 : i1 + n1] if i1 + n1 > i0 else pattern[i0:]
    elif nb == 1:
        i0, _j0, n0 = blocks[0]
        past_flat = pattern[:i0]
        present_flat = pattern[i0 : i0 + n0]
    else:
        if threshold > 0.0:
            return None
        past_flat = ()
        present_flat = pattern

    if fuzzy > 0.0:
        expected = {v[0] for v in fuzzy_map.values()}
        n_extras = sum(1 for st in state if st not in fuzzy_map)
        _ = expected  # flat missing is not used beyond this point
    elif n_extras_flat is not None:
        n_extras = n_extras_flat
    else:
        _missing_flat, extras_flat = diff_missing_extras(present_flat, state, b2j)
        n_extras = len(extras_flat)

    m = len(matches)
    length = rec.length
    evidence = float(m / length) if length > 0 else 0.0
    fragmentation = float(nb - 1)
    den = 2.0 * m + n_extras
    snr = float((2.0 * m - n_extras) / den) if den > 0 else 0.0

    # Event mapping with flat counts, then the "first match in last past event" fix-up.
    seq = rec.events
    c1 = len(past_flat)
    c2 = 0
    ev = 0
    while c2 < c1:
        c2 += len(seq[ev])
        ev += 1
    e1 = ev
    c1 += len(present_flat)
    while c2 < c1:
        c2 += len(seq[ev])
        ev += 1
    past = [list(e) for e in seq[:e1]]
    present = [list(e) for e in seq[e1:ev]]
    future = [list(e) for e in seq[ev:]]
    if past and matches and matches[0] in past[-1]:
        present.insert(0, past[-1])
        past = past[:-1]

    match_set = set(matches)
    missing = [[s for s in e if s not in match_set] for e in present]
    pflat = [s for e in present for s in e]
    pset = set(pflat)
    extras = [[s for s in e if s not in pset] for e in stm]
    plen = len(pflat)
    confidence = float(m / plen) if plen > 0 else 0.0
    return _Cand(
        rec=rec,
        similarity=similarity,
        matches=matches,
        anomalies=anomalies,
        n_blocks=nb,
        past=past,
        present=present,
        future=future,
        missing=missing,
        extras=extras,
        evidence=evidence,
        confidence=confidence,
        snr=snr,
        fragmentation=fragmentation,
        present_flat=pflat,
    )


def _pre_potential(c: _Cand) -> float:
    frag = c.fragmentation
    return (c.evidence + c.confidence) * c.snr + (0.0 if frag == -1 else 1.0 / (frag + 1))


def _candidates(
    kb: KnowledgeBase, stm: list[list[str]], state: list[str], params: PredictParams
) -> list[_Cand]:
    """Candidates that pass the threshold, already cut to ``3*max_predictions`` (§5.5.1)."""
    threshold = float(params.recall_threshold)
    token_mode = params.use_token_matching
    fuzzy = float(params.fuzzy_token_threshold or 0.0)
    limit = params.max_predictions * 3
    if USE_INDEX and token_mode and fuzzy <= 0.0 and not params.filter_pipeline and kb.patterns:
        try:
            return _candidates_indexed(kb, stm, state, threshold, limit)
        except ValueError:  # more distinct tokens than code points: brute force
            pass
    state_str = " ".join(state)
    if params.filter_pipeline:
        from .filters import run_pipeline

        recs: Iterable[PatternRecord] = run_pipeline(kb, state, params)
    elif token_mode:
        recs = candidate_indices(kb, state, threshold)
    else:
        recs = kb.patterns.values()
    out: list[_Cand] = []
    b2j = index_b(state)
    for rec in recs:
        sim = _similarity(rec, state, state_str, token_mode)
        if not _passes(sim, threshold):
            continue
        c = _build_candidate(rec, sim, state, stm, threshold, fuzzy, b2j)
        if c is not None:
            out.append(c)
    if len(out) > limit:
        out = sorted(out, key=lambda c: (-_pre_potential(c), c.rec.name))[:limit]
    return out


def _passing(
    idx: PatternIndex, state: list[str], threshold: float
) -> tuple[
    npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]
]:
    """Steps 1-2 of ``_candidates_indexed``: (sel, lcs, lens, similarity) of passing patterns."""
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


def _candidates_indexed(
    kb: KnowledgeBase, stm: list[list[str]], state: list[str], threshold: float, limit: int
) -> list[_Cand]:
    """Token mode without fuzzy matching: same result as brute force, far less work.

    1. Symbol-count bound on LCS drops patterns that cannot reach the threshold.
    2. Exact LCS for the rest in one rapidfuzz ``cdist`` call on code-point strings.
    3. When more than ``limit`` pass, candidates are built in order of an upper bound
       on ``_pre_potential`` (M <= L, confidence <= 1, E >= |S| - L, 1/(frag+1) <= 1)
       and building stops once the ``limit``-th best real value beats every remaining
       bound, so the pruned set is exactly KATO's top ``limit`` (ties by name).
    """
    idx = pattern_index(kb)
    if kernel.enabled():
        return _candidates_kernel(idx, stm, state, threshold, limit)
    n_s = len(state)
    sel, lcs, lens, sims = _passing(idx, state, threshold)
    if sel.size == 0:
        return []
    recs = idx.records
    b2j = index_b(state)
    if sel.size <= limit:
        out = []
        for i, sim in zip(sel.tolist(), sims.tolist(), strict=True):
            c = _build_candidate(recs[i], sim, state, stm, threshold, 0.0, b2j)
            if c is not None:
                out.append(c)
        return out
    snr_ub = (3.0 * lcs - n_s) / (lcs + n_s)
    ub = (lcs / lens + 1.0) * np.maximum(snr_ub, 0.0) + 1.0 + 1e-9
    order = np.argsort(-ub, kind="stable")
    kth: list[float] = []  # min-heap of the best `limit` pre-potentials built so far
    built: list[tuple[float, str, _Cand]] = []
    ub_l = ub.tolist()
    sel_l = sel.tolist()
    sims_l = sims.tolist()
    for pos in order.tolist():
        if len(kth) >= limit and kth[0] > ub_l[pos]:
            break  # nothing left can reach the top `limit` (bounds are sorted)
        c = _build_candidate(recs[sel_l[pos]], sims_l[pos], state, stm, threshold, 0.0, b2j)
        if c is None:
            continue
        pre = _pre_potential(c)
        built.append((-pre, c.rec.name, c))
        if len(kth) < limit:
            heapq.heappush(kth, pre)
        elif pre > kth[0]:
            heapq.heapreplace(kth, pre)
    built.sort(key=lambda t: (t[0], t[1]))
    return [t[2] for t in built[:limit]]


def _kernel_select(
    idx: PatternIndex,
    state: list[str],
    threshold: float,
    limit: int,
) -> tuple[kernel.I64, npt.NDArray[np.float64], npt.NDArray[np.int32], kernel.I32]:
    """``_candidates_indexed``'s pruned set with the C kernel: (sel, sims, E, state codes).

    One kernel pass over every pattern gives the exact token LCS (so the similarity and
    the threshold test of ``_passing``) and, for the passing ones, M, E, block count and
    present length (leaving out patterns that provably cannot reach the top ``limit``);
    ``_pre_potential`` is computed for them in numpy (same IEEE operations, same order)
    and the top ``limit`` by (-pre_potential, name) are kept.
    """
    q = kernel.state_codes(idx, state)
    sel, sims, m, e, nb, plen = kernel.scan(idx, q, threshold, limit)
    if threshold > 0.0:  # zero blocks: dropped (§5.3 C); impossible when LCS >= 1
        keep = np.flatnonzero(nb > 0)
        if keep.size < sel.size:
            sel, sims = sel[keep], sims[keep]
            m, e, nb, plen = m[keep], e[keep], nb[keep], plen[keep]
    recs = idx.records
    if sel.size > limit:
        neg = -kernel.pre_potentials(m, e, nb, plen, idx.lens[sel])
        if limit <= 0:
            chosen = np.zeros(0, dtype=np.intp)
        else:
            kth = np.partition(neg, limit - 1)[limit - 1]
            better = np.flatnonzero(neg < kth)
            ties = np.flatnonzero(neg == kth)
            need = limit - better.size
            if ties.size > need:
                tl = sorted(ties.tolist(), key=lambda t: recs[int(sel[t])].name)[:need]
                ties = np.asarray(tl, dtype=np.intp)
            chosen = np.concatenate([better, ties])
        sel, sims, e = sel[chosen], sims[chosen], e[chosen]
    return sel, sims, e, q


def _candidates_kernel(
    idx: PatternIndex, stm: list[list[str]], state: list[str], threshold: float, limit: int
) -> list[_Cand]:
    """``_candidates_indexed`` with the C kernel: the same pruned set, cheaper.

    The survivors (``_kernel_select``) are built in Python, reusing the kernel's blocks and
    flat-extras count.
    """
    sel, sims, e, q = _kernel_select(idx, state, threshold, limit)
    recs = idx.records
    sel_l = sel.tolist()
    blocks = kernel.blocks_batch(idx, sel_l, q)
    out: list[_Cand] = []
    for i, sim, bl, ne in zip(sel_l, sims.tolist(), blocks, e.tolist(), strict=True):
        c = _build_candidate(recs[i], sim, state, stm, threshold, 0.0, None, bl, ne)
        if c is not None:
            out.append(c)
    return out


def _full_path(
    kb: KnowledgeBase, stm: list[list[str]], state: list[str], params: PredictParams
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if (
        kernel.enabled()
        and USE_INDEX
        and params.use_token_matching
        and not params.fuzzy_token_threshold
        and not params.filter_pipeline
        and not params.affinity_emotive
        and kb.patterns
    ):
        try:
            pidx = pattern_index(kb)
            kernel.state_codes(pidx, state)
        except ValueError:  # more distinct tokens than code points: generic path
            pass
        else:
            return _full_path_kernel(kb, pidx, stm, state, params)
    cands = _candidates(kb, stm, state, params)
    if not cands:
        return [], []

    weights = _affinity_weights(kb, state, params.affinity_emotive)
    if weights:
        ws = _wsum(weights, state)
        for c in cands:
            wm = _wsum(weights, c.matches)
            wp = _wsum(weights, c.rec.flat)
            wpr = _wsum(weights, c.present_flat)
            wx = _wsum(weights, (s for e in c.extras for s in e))
            den = ws + wp
            c.w_sim = 2.0 * wm / den if den > 0 else None
            c.w_ev = wm / wp if wp > 0 else 0.0
            c.w_conf = wm / wpr if wpr > 0 else 0.0
            c.w_snr = wm / (wm + wx) if (wm + wx) > 0 else 0.0

    # Ensemble order = name order, so every tie below (future groups) is deterministic.
    cands.sort(key=lambda c: c.rec.name)
    U = kb.total_unique_patterns
    F = kb.total_pattern_frequencies
    S = kb.distinct_symbols
    pmf = kb.pmf
    known = kb.symbol_freq

    spc: dict[str, float] = {}
    e_tot = 0
    freqs: list[int] = []
    for c in cands:
        f = c.rec.frequency if c.rec.frequency else 1
        freqs.append(f)
        e_tot += f
        for s in chain(c.matches, (x for e in c.missing for x in e)):
            if s not in spc:
                spc[s] = float(pmf.get(s, 0) / U) if (s in known and U > 0) else 0.0

    # itfdf_similarity: numpy exactly as KATO (sorted symbol axis, matmul, row norms).
    n = len(cands)
    state_counts = Counter(state)
    gsyms = sorted(set(chain.from_iterable(c.present_flat for c in cands)) | set(state))
    idx = {s: i for i, s in enumerate(gsyms)}
    state_vec = np.zeros(len(gsyms))
    for s, cnt in state_counts.items():
        state_vec[idx[s]] = spc.get(s, 0) * cnt
    state_norm = np.linalg.norm(state_vec)
    mat = np.zeros((n, len(gsyms)))
    for i, c in enumerate(cands):
        for s, cnt in Counter(c.present_flat).items():
            mat[i, idx[s]] = spc.get(s, 0) * cnt
    if state_norm > 0:
        dots = mat @ state_vec
        norms = np.linalg.norm(mat, axis=1)
        denom = norms * state_norm
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = np.where(denom > 0, dots / denom, 0.0)
        distances = 1.0 - cos
    else:
        distances = np.ones(n)

    preds: list[dict[str, Any]] = []
    for i, c in enumerate(cands):
        rec = c.rec
        freq = freqs[i]
        distance = float(distances[i])
        p_e_h = float(freq / F) if F > 0 else 0.0
        itfdf = 1 - (distance * freq / e_tot) if e_tot > 0 else 0.0
        ps = c.present_flat
        if ps:
            logs: list[float] = []
            for s in ps:
                prob = spc.get(s, 1e-10)
                logs.append(math.log10(prob) if prob > 0 else math.log10(1e-10))
            confluence = p_e_h * (1 - 10 ** reduce(add, logs))
        else:
            confluence = 0.0
        pre_m = kb.precomputed.get(rec.name)
        if pre_m is not None:
            entropy = pre_m.entropy
            nentropy = pre_m.normalized_entropy
            gnentropy = pre_m.global_normalized_entropy
        elif ps:
            counts = Counter(ps)
            plen = len(ps)
            entropy = 0.0
            for cnt in counts.values():
                pr = cnt / plen
                entropy -= pr * math.log2(pr)
            nentropy = 0.0
            gnentropy = 0.0
            if S > 1:
                for cnt in counts.values():
                    pr = cnt / plen
                    nentropy -= pr * math.log(pr, S)
                for s in counts:
                    prob = spc.get(s, 0)
                    if prob > 0:
                        gnentropy -= prob * math.log(prob, S)
        else:
            entropy = nentropy = gnentropy = 0.0
        tfidf = _tfidf(pre_m.tf_vector if pre_m is not None else None, ps, spc, U)
        preds.append(
            {
                "type": "prototypical",
                "name": rec.name,
                "frequency": freq,
                "emotives": average_emotives(rec.emotives) if rec.emotives else {},
                "matches": c.matches,
                "past": c.past,
                "present": c.present,
                "missing": c.missing,
                "extras": c.extras,
                "anomalies": c.anomalies,
                "potential": 0.0,
                "evidence": c.evidence,
                "similarity": c.similarity,
                "fragmentation": c.fragmentation,
                "snr": c.snr,
                "confluence": confluence,
                "predictive_information": 0.0,
                "sequence": [list(e) for e in rec.events],
                "future": c.future,
                "confidence": c.confidence,
                "weighted_similarity": c.w_sim,
                "weighted_evidence": c.w_ev,
                "weighted_confidence": c.w_conf,
                "weighted_snr": c.w_snr,
                "entropy": entropy,
                "normalized_entropy": nentropy,
                "global_normalized_entropy": gnentropy,
                "itfdf_similarity": itfdf,
                "tfidf_score": tfidf,
                "pattern_probability": 0.0,
                "weighted_strength": 0.0,
                "bayesian_posterior": 0.0,
                "bayesian_prior": 0.0,
                "bayesian_likelihood": 0.0,
            }
        )

    future_potentials = _predictive_information(preds)

    fr = np.array([p["frequency"] for p in preds], dtype=float)
    sims = np.array([p["similarity"] for p in preds], dtype=float)
    sum_f = fr.sum()
    if sum_f > 0:
        priors = fr / sum_f
        ev_sum = np.dot(sims, priors)
        posts = (sims * priors) / ev_sum if ev_sum > 0 else np.zeros(len(fr))
        for i, p in enumerate(preds):
            p["bayesian_posterior"] = float(posts[i])
            p["bayesian_prior"] = float(priors[i])
            p["bayesian_likelihood"] = float(sims[i])
    else:
        for p in preds:
            p["bayesian_likelihood"] = p["similarity"]

    use_weighted = bool(weights) and any(p["weighted_evidence"] is not None for p in preds)
    for p in preds:
        if use_weighted:
            ev, cf, sn = p["weighted_evidence"], p["weighted_confidence"], p["weighted_snr"]
        else:
            ev, cf, sn = p["evidence"], p["confidence"], p["snr"]
        frag = p["fragmentation"]
        fc = 0.0 if frag == -1 else 1.0 / (frag + 1)
        p["potential"] = float((ev + cf) * sn + p["itfdf_similarity"] + fc)

    return _rank(preds, params.rank_sort_algo, params.max_predictions), future_potentials


_LOG10_FLOOR = math.log10(1e-10)


def _full_path_kernel(
    kb: KnowledgeBase,
    idx: PatternIndex,
    stm: list[list[str]],
    state: list[str],
    params: PredictParams,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``_full_path`` (no affinity, no fuzzy, no filters) with the C kernel end to end.

    Same numbers in the same IEEE operation order as the generic path (checked byte for
    byte by tests/core/test_kernel.py), but the per-candidate work runs in C and numpy over
    all ``3*max_predictions`` survivors, and Python lists/dicts are built only for the
    ``max_predictions`` that are returned (and the first member of each future group).
    """
    threshold = float(params.recall_threshold)
    limit = params.max_predictions * 3
    sel0, sims0, _e, q = _kernel_select(idx, state, threshold, limit)
    if sel0.size == 0:
        return [], []
    recs = idx.records
    # Ensemble order = name order, so every tie below (future groups, ranking) is by name.
    pairs = sorted(zip(sel0.tolist(), sims0.tolist(), strict=True), key=lambda t: recs[t[0]].name)
    sel_l = [t[0] for t in pairs]
    sim_l = [t[1] for t in pairs]
    n = len(sel_l)
    sel = np.asarray(sel_l, dtype=np.int64)
    info, uflag = kernel.survivors(idx, sel, q)

    U = kb.total_unique_patterns
    F = kb.total_pattern_frequencies
    S = kb.distinct_symbols
    pmf = kb.pmf
    known = kb.symbol_freq
    # spc's keys are exactly the present tokens of the survivors: matches are state tokens
    # inside the present events and missing are the other present tokens.
    token_of = idx.token_of
    ucodes = np.flatnonzero(uflag).tolist()
    spc: dict[str, float] = {}
    spc_arr = np.zeros(uflag.size)
    for code in ucodes:
        s = token_of[code]
        v = float(pmf.get(s, 0) / U) if (s in known and U > 0) else 0.0
        spc[s] = v
        spc_arr[code] = v
    gsyms = sorted(set(spc) | set(state))
    col = {s: i for i, s in enumerate(gsyms)}
    colmap = np.full(uflag.size, -1, dtype=np.int32)
    if ucodes:
        colmap[ucodes] = [col[token_of[c]] for c in ucodes]
    freqs = [recs[i].frequency if recs[i].frequency else 1 for i in sel_l]
    e_tot = sum(freqs)
    mat, ens = kernel.ensemble(
        idx,
        sel,
        info,
        np.asarray(freqs, dtype=np.int64),
        spc_arr,
        colmap,
        len(gsyms),
        (F, U, S),
        _LOG10_FLOOR,
    )

    # itfdf_similarity: numpy exactly as the generic path (same matrix, same calls).
    state_vec = np.zeros(len(gsyms))
    for s, cnt in Counter(state).items():
        state_vec[col[s]] = spc.get(s, 0) * cnt
    state_norm = np.linalg.norm(state_vec)
    if state_norm > 0:
        dots = mat @ state_vec
        norms = np.linalg.norm(mat, axis=1)
        denom = norms * state_norm
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = np.where(denom > 0, dots / denom, 0.0)
        distances = 1.0 - cos
    else:
        distances = np.ones(n)
    fr = np.array(freqs, dtype=float)
    itfdf = 1.0 - (distances * fr) / float(e_tot) if e_tot > 0 else np.zeros(n)

    confluence = ens[:, kernel.EN_CONF].tolist()
    entropy = ens[:, kernel.EN_ENT].tolist()
    nentropy = ens[:, kernel.EN_NENT].tolist()
    gnentropy = ens[:, kernel.EN_GNENT].tolist()
    tfidf = ens[:, kernel.EN_TFIDF].tolist()
    if kb.precomputed:
        for k, i in enumerate(sel_l):
            pre_m = kb.precomputed.get(recs[i].name)
            if pre_m is not None:
                entropy[k] = pre_m.entropy
                nentropy[k] = pre_m.normalized_entropy
                gnentropy[k] = pre_m.global_normalized_entropy
                tfidf[k] = _tfidf(pre_m.tf_vector, [], spc, U)

    # Per-pattern metrics (§5.4), vectorised with _build_candidate's operations.
    mf = info[:, kernel.SV_M].astype(np.float64)
    ef = info[:, kernel.SV_E].astype(np.float64)
    nb = info[:, kernel.SV_NB]
    plen = info[:, kernel.SV_PEND] - info[:, kernel.SV_PSTART]
    length = idx.lens[sel]
    with np.errstate(divide="ignore", invalid="ignore"):
        evidence = np.where(length > 0, mf / length, 0.0)
        confidence = np.where(plen > 0, mf / plen, 0.0)
        den = 2.0 * mf + ef
        snr = np.where(den > 0, (2.0 * mf - ef) / den, 0.0)
        frag = (nb - 1).astype(np.float64)
        fc = np.where(frag == -1, 0.0, 1.0 / (frag + 1))
    potential = (((evidence + confidence) * snr + itfdf) + fc).tolist()

    # Predictive information (§5.5 item 12), as _predictive_information.
    pp: list[float] = [0.0] * n
    ws: list[float] = [0.0] * n
    pi: list[float] = [0.0] * n
    fps: list[dict[str, Any]] = []
    fsum = e_tot
    e2_arr = info[:, kernel.SV_E2]
    if fsum != 0:
        freq_arr = np.asarray(freqs, dtype=np.int64)
        gid, w_g, count_g, first_g = kernel.future_groups(
            idx, sel, e2_arr, freq_arr, np.asarray(sim_l, dtype=np.float64)
        )
        pp_a = freq_arr / fsum
        ws_a = np.asarray(sim_l, dtype=np.float64) * pp_a
        w_l = w_g.tolist()
        total = sum(w_l)
        agg_l = [w / total if total > 0 else 0.0 for w in w_l]
        agg_a = np.asarray(agg_l, dtype=np.float64)
        has = gid >= 0
        agg_of = np.where(has, agg_a[np.where(has, gid, 0)] if agg_l else 0.0, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            pi_a = np.where(has & (agg_of > 0), ws_a / agg_of, 0.0)
        pp, ws, pi = pp_a.tolist(), ws_a.tolist(), pi_a.tolist()
        counts = count_g.tolist()
        gorder = sorted(range(len(w_l)), key=lambda g: -agg_l[g])
        firsts = first_g[gorder] if gorder else first_g
        futs = kernel.futures(idx, sel[firsts], e2_arr[firsts])
        for g, fut in zip(gorder, futs, strict=True):
            fps.append(
                {
                    "future": fut,
                    "aggregate_potential": agg_l[g],
                    "supporting_patterns": counts[g],
                    "total_weighted_frequency": w_l[g],
                }
            )

    # Bayesian (§5.5 item 13), numpy exactly as the generic path.
    sims = np.array(sim_l, dtype=float)
    sum_f = fr.sum()
    if sum_f > 0:
        priors = fr / sum_f
        ev_sum = np.dot(sims, priors)
        posts = (sims * priors) / ev_sum if ev_sum > 0 else np.zeros(len(fr))
        post_l: list[float] = posts.tolist()
        prior_l: list[float] = priors.tolist()
        like_l: list[float] = sims.tolist()
    else:
        post_l = prior_l = [0.0] * n
        like_l = sim_l

    frag_l = frag.tolist()
    cols: dict[str, list[Any]] = {
        "potential": potential,
        "similarity": sim_l,
        "evidence": evidence.tolist(),
        "confidence": confidence.tolist(),
        "snr": snr.tolist(),
        "fragmentation": frag_l,
        "frequency": freqs,
        "entropy": entropy,
        "normalized_entropy": nentropy,
        "global_normalized_entropy": gnentropy,
        "itfdf_similarity": itfdf.tolist(),
        "confluence": confluence,
        "predictive_information": pi,
        "bayesian_posterior": post_l,
        "bayesian_prior": prior_l,
        "bayesian_likelihood": like_l,
        "tfidf_score": tfidf,
        "pattern_probability": pp,
        "weighted_strength": ws,
    }
    # _rank: (value is None, -value, name); index order is name order and the sort is stable.
    vals = cols.get(params.rank_sort_algo)
    top_n = max(0, params.max_predictions)
    if vals is None:
        top = list(range(n))[:top_n]
    else:
        vv = vals
        top = sorted(range(n), key=lambda k: -vv[k])[:top_n]

    built = kernel.lists(idx, sel[top], info[top], q, [len(e) for e in stm], state)
    ev_l, cf_l, sn_l = cols["evidence"], cols["confidence"], cols["snr"]
    itf_l = cols["itfdf_similarity"]
    preds: list[dict[str, Any]] = []
    for k, (matches, past, present, missing, extras, sequence, future) in zip(
        top, built, strict=True
    ):
        rec = recs[sel_l[k]]
        preds.append(
            {
                "type": "prototypical",
                "name": rec.name,
                "frequency": freqs[k],
                "emotives": average_emotives(rec.emotives) if rec.emotives else {},
                "matches": matches,
                "past": past,
                "present": present,
                "missing": missing,
                "extras": extras,
                "anomalies": [],
                "potential": potential[k],
                "evidence": ev_l[k],
                "similarity": sim_l[k],
                "fragmentation": frag_l[k],
                "snr": sn_l[k],
                "confluence": confluence[k],
                "predictive_information": pi[k],
                "sequence": sequence,
                "future": future,
                "confidence": cf_l[k],
                "weighted_similarity": None,
                "weighted_evidence": None,
                "weighted_confidence": None,
                "weighted_snr": None,
                "entropy": entropy[k],
                "normalized_entropy": nentropy[k],
                "global_normalized_entropy": gnentropy[k],
                "itfdf_similarity": itf_l[k],
                "tfidf_score": tfidf[k],
                "pattern_probability": pp[k],
                "weighted_strength": ws[k],
                "bayesian_posterior": post_l[k],
                "bayesian_prior": prior_l[k],
                "bayesian_likelihood": like_l[k],
            }
        )
    return preds, fps


def _tfidf(
    tf_vector: dict[str, float] | None, present: list[str], spc: dict[str, float], U: int
) -> float:
    """Mean tf*idf with KATO's ``int((pmf/U)*U)`` document count (spec §5.5 item 10)."""
    if U <= 0:
        return 0.0
    if tf_vector is not None:
        items: list[tuple[str, float]] = list(tf_vector.items())
    else:
        if not present:
            return 0.0
        n = len(present)
        items = [(s, cnt / n) for s, cnt in Counter(present).items()]
    scores: list[float] = []
    for s, tf in items:
        if s in spc:
            k = int(spc[s] * U)
            if k == 0:
                k = 1
        else:
            k = 1
        scores.append(tf * (math.log2(U / k) + 1))
    if not scores:
        return 0.0
    total = scores[0]  # left-to-right (Python 3.11's sum(); 3.12+ would compensate)
    for x in scores[1:]:
        total += x
    return total / len(scores)


def _future_key(future: list[list[str]]) -> str:
    normalized = [sorted(e) for e in future]
    return hashlib.sha1(json.dumps(normalized, sort_keys=True).encode()).hexdigest()


def _predictive_information(preds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pattern_probability, weighted_strength, predictive_information; future_potentials."""
    fsum = sum(p["frequency"] for p in preds)
    if fsum == 0:
        return []
    for p in preds:
        p["pattern_probability"] = p["frequency"] / fsum
        p["weighted_strength"] = p["similarity"] * p["pattern_probability"]
    groups: dict[str, dict[str, Any]] = {}
    keys: list[str | None] = []
    for p in preds:
        fut = p["future"]
        if not fut:
            keys.append(None)
            continue
        fk = _future_key(fut)
        keys.append(fk)
        g = groups.get(fk)
        if g is None:
            g = groups[fk] = {"future": fut, "total_weighted_frequency": 0.0, "count": 0}
        g["total_weighted_frequency"] += p["frequency"] * p["similarity"]
        g["count"] += 1
    total = sum(g["total_weighted_frequency"] for g in groups.values())
    for g in groups.values():
        g["aggregate_potential"] = g["total_weighted_frequency"] / total if total > 0 else 0.0
    for p, k in zip(preds, keys, strict=True):
        if k is None:
            p["predictive_information"] = 0.0
            continue
        agg = groups[k]["aggregate_potential"]
        p["predictive_information"] = p["weighted_strength"] / agg if agg > 0 else 0.0
    ordered = sorted(groups.values(), key=lambda g: -g["aggregate_potential"])
    return [
        {
            "future": [list(e) for e in g["future"]],
            "aggregate_potential": g["aggregate_potential"],
            "supporting_patterns": g["count"],
            "total_weighted_frequency": g["total_weighted_frequency"],
        }
        for g in ordered
    ]
