"""The full path end to end in C and numpy (the C kernel, ``core/kernel.py``).

Why a module of its own: it is the fast implementation of :mod:`.full_path` for the
common case (token matching, no affinity emotive, no fuzzy tokens, no filter pipeline):
one kernel pass over all patterns, ensemble statistics over the survivors as columns, and
Python objects only for the ``max_predictions`` returned (and the first member of each
future group).  Every number uses the generic path's IEEE operations in the same order;
tests/core/test_kernel.py checks the two byte for byte.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from .. import kernel
from ..knowledge import KnowledgeBase, PatternRecord, average_emotives
from ..prefilter import PatternIndex, pattern_index
from .candidates import kernel_select
from .encoded import EncodedPredictions
from .ensemble import bayesian, cosine_distances, tfidf
from .params import MatcherOptions, PredictParams

__all__ = ["full_path_kernel", "kernel_index"]

F64 = npt.NDArray[np.float64]
_LOG10_FLOOR = math.log10(1e-10)


def kernel_index(
    kb: KnowledgeBase, state: list[str], params: PredictParams, options: MatcherOptions
) -> PatternIndex | None:
    """The KB's pattern index when this path computes ``state``'s predictions, else None."""
    if not (
        options.runs_kernel()
        and params.use_token_matching
        and not params.fuzzy_token_threshold
        and not params.filter_pipeline
        and not params.affinity_emotive
        and kb.patterns
    ):
        return None
    try:
        pidx = pattern_index(kb)
        kernel.state_codes(pidx, state)
    except ValueError:  # more distinct tokens than code points: generic path
        return None
    return pidx


def full_path_kernel(
    kb: KnowledgeBase,
    idx: PatternIndex,
    stm: list[list[str]],
    state: list[str],
    params: PredictParams,
    encoded: bool = False,
) -> tuple[list[dict[str, Any]] | EncodedPredictions, list[dict[str, Any]] | EncodedPredictions]:
    """``full_path`` (no affinity, no fuzzy, no filters) with the C kernel end to end.

    The per-candidate work runs in C and numpy over all ``3*max_predictions`` survivors,
    and Python lists/dicts are built only for the ``max_predictions`` that are returned;
    with ``encoded``, not even those: the kernel writes their JSON, and the future
    potentials' too.
    """
    threshold = float(params.recall_threshold)
    limit = params.max_predictions * 3
    sel0, sims0, _e, q = kernel_select(idx, state, threshold, limit)
    if sel0.size == 0:
        return [], []
    recs = idx.records
    # Ensemble order = name order, so every tie below (future groups, ranking) is by name.
    sel0_l, sims0_l = sel0.tolist(), sims0.tolist()
    names = _gather(idx.names, sel0_l)
    order = sorted(range(len(names)), key=names.__getitem__)  # stable, as sorting the pairs
    sel_l = _gather(sel0_l, order)
    sim_l = _gather(sims0_l, order)
    sel = np.asarray(sel_l, dtype=np.int64)
    info, uflag = kernel.survivors(idx, sel, q)
    freqs = [r.frequency or 1 for r in _gather(recs, sel_l)]
    cols, groups = _columns(kb, idx, sel, sel_l, sim_l, info, uflag, freqs, state)
    top = _top(cols.get(params.rank_sort_algo), len(sel_l), params.max_predictions)
    stm_lens = [len(e) for e in stm]
    e2_arr = info[:, kernel.SV_E2]
    if encoded:
        raw = kernel.predictions_json(
            idx,
            sel[top],
            info[top],
            q,
            stm_lens,
            [orjson.dumps(s) for s in state],
            _table(recs, sel_l, top, cols),
            len(_TABLE),
            _LAYOUT,
        )
        return EncodedPredictions(raw, len(top)), _fps_encoded(idx, sel, e2_arr, groups)
    built = kernel.lists(idx, sel[top], info[top], q, stm_lens, state)
    return _assemble(recs, sel_l, top, built, cols), _fps(idx, sel, e2_arr, groups)


def _gather(items: list[Any], at: list[int]) -> list[Any]:
    """``[items[i] for i in at]``, the loop in C (``operator.itemgetter``)."""
    if len(at) > 1:
        return list(operator.itemgetter(*at)(items))
    return [items[at[0]]] if at else []


def _symbol_axis(
    kb: KnowledgeBase, idx: PatternIndex, uflag: npt.NDArray[Any], state: list[str]
) -> tuple[dict[str, float], F64, dict[str, int], npt.NDArray[np.int32]]:
    """(spc, spc by token code, column of each symbol, column by token code).

    spc's keys are exactly the present tokens of the survivors: matches are state tokens
    inside the present events and missing are the other present tokens.
    """
    U = kb.total_unique_patterns
    pmf = kb.pmf
    known = kb.symbol_freq
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
    return spc, spc_arr, col, colmap


def _itfdf(
    mat: F64, state: list[str], spc: dict[str, float], col: dict[str, int], fr: F64, e_tot: int
) -> F64:
    """itfdf_similarity: numpy exactly as the generic path (same matrix, same calls)."""
    n = fr.size
    state_vec = np.zeros(len(col))
    for s, cnt in Counter(state).items():
        state_vec[col[s]] = spc.get(s, 0) * cnt
    distances = cosine_distances(mat, state_vec, n)
    itfdf: F64 = 1.0 - (distances * fr) / float(e_tot) if e_tot > 0 else np.zeros(n)
    return itfdf


def _ensemble_lists(
    kb: KnowledgeBase, ens: F64, recs: list[PatternRecord], sel_l: list[int], spc: dict[str, float]
) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """(confluence, entropy, normalized, global normalized, tfidf) from the kernel, with
    finalize-training's metrics where a pattern has them."""
    confluence: list[float] = ens[:, kernel.EN_CONF].tolist()
    entropy: list[float] = ens[:, kernel.EN_ENT].tolist()
    nentropy: list[float] = ens[:, kernel.EN_NENT].tolist()
    gnentropy: list[float] = ens[:, kernel.EN_GNENT].tolist()
    tfidf_l: list[float] = ens[:, kernel.EN_TFIDF].tolist()
    if kb.precomputed:
        U = kb.total_unique_patterns
        for k, i in enumerate(sel_l):
            pre_m = kb.precomputed.get(recs[i].name)
            if pre_m is not None:
                entropy[k] = pre_m.entropy
                nentropy[k] = pre_m.normalized_entropy
                gnentropy[k] = pre_m.global_normalized_entropy
                tfidf_l[k] = tfidf(pre_m.tf_vector, [], spc, U)
    return confluence, entropy, nentropy, gnentropy, tfidf_l


def _per_pattern(info: npt.NDArray[Any], length: npt.NDArray[Any], itfdf: F64) -> dict[str, F64]:
    """Per-pattern metrics (§5.4), vectorised with ``build_candidate``'s operations."""
    mf = info[:, kernel.SV_M].astype(np.float64)
    ef = info[:, kernel.SV_E].astype(np.float64)
    nb = info[:, kernel.SV_NB]
    plen = info[:, kernel.SV_PEND] - info[:, kernel.SV_PSTART]
    with np.errstate(divide="ignore", invalid="ignore"):
        evidence = np.where(length > 0, mf / length, 0.0)
        confidence = np.where(plen > 0, mf / plen, 0.0)
        den = 2.0 * mf + ef
        snr = np.where(den > 0, (2.0 * mf - ef) / den, 0.0)
        frag = (nb - 1).astype(np.float64)
        fc = np.where(frag == -1, 0.0, 1.0 / (frag + 1))
    potential = ((evidence + confidence) * snr + itfdf) + fc
    return {
        "potential": potential,
        "evidence": evidence,
        "confidence": confidence,
        "snr": snr,
        "fragmentation": frag,
    }


class _Groups(NamedTuple):
    """The future groups of the survivors, best aggregate potential first: for each, its
    first member (survivor position), aggregate potential, supporting patterns and total
    weighted frequency (one ``future_potentials`` item)."""

    first: npt.NDArray[Any]
    aggregate: list[float]
    supporting: list[int]
    weight: list[float]


def _predictive_information(
    idx: PatternIndex,
    sel: kernel.I64,
    e2_arr: npt.NDArray[Any],
    freqs: list[int],
    sim_l: list[float],
) -> tuple[list[float], list[float], list[float], _Groups]:
    """(pattern_probability, weighted_strength, predictive_information, future groups)
    (§5.5 item 12), as ``ensemble.predictive_information``."""
    n = len(freqs)
    fsum = sum(freqs)
    if fsum == 0:
        return [0.0] * n, [0.0] * n, [0.0] * n, _NO_GROUPS
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
    counts = count_g.tolist()
    gorder = sorted(range(len(w_l)), key=lambda g: -agg_l[g])
    groups = _Groups(
        first_g[gorder] if gorder else first_g[:0],
        _gather(agg_l, gorder),
        _gather(counts, gorder),
        _gather(w_l, gorder),
    )
    return pp_a.tolist(), ws_a.tolist(), pi_a.tolist(), groups


_NO_GROUPS = _Groups(np.zeros(0, dtype=np.intp), [], [], [])


def _fps(
    idx: PatternIndex, sel: kernel.I64, e2_arr: npt.NDArray[Any], groups: _Groups
) -> list[dict[str, Any]]:
    """future_potentials as dicts (each group's future: its first member's)."""
    futs = kernel.futures(idx, sel[groups.first], e2_arr[groups.first])
    return [
        {
            "future": fut,
            "aggregate_potential": agg,
            "supporting_patterns": count,
            "total_weighted_frequency": w,
        }
        for fut, agg, count, w in zip(
            futs, groups.aggregate, groups.supporting, groups.weight, strict=True
        )
    ]


def _fps_encoded(
    idx: PatternIndex, sel: kernel.I64, e2_arr: npt.NDArray[Any], groups: _Groups
) -> EncodedPredictions:
    """:func:`_fps`'s JSON, written by the kernel (no dicts, no token lists)."""
    table = orjson.dumps([groups.aggregate, groups.supporting, groups.weight], option=_JSON_OPTS)
    raw = kernel.futures_json(idx, sel[groups.first], e2_arr[groups.first], table, 3, _FPS_LAYOUT)
    return EncodedPredictions(raw, len(groups.supporting))


def _bayesian_lists(fr: F64, sim_l: list[float]) -> tuple[list[float], list[float], list[float]]:
    """(posterior, prior, likelihood) (§5.5 item 13), numpy exactly as the generic path."""
    sims = np.array(sim_l, dtype=float)
    res = bayesian(fr, sims)
    if res is None:
        zeros = [0.0] * len(sim_l)
        return zeros, zeros, sim_l
    posts, priors = res
    return posts.tolist(), priors.tolist(), sims.tolist()


def _columns(
    kb: KnowledgeBase,
    idx: PatternIndex,
    sel: kernel.I64,
    sel_l: list[int],
    sim_l: list[float],
    info: npt.NDArray[Any],
    uflag: npt.NDArray[Any],
    freqs: list[int],
    state: list[str],
) -> tuple[dict[str, list[Any]], _Groups]:
    """Every output number of the survivors as a column by output key; the future groups."""
    spc, spc_arr, col, colmap = _symbol_axis(kb, idx, uflag, state)
    U = kb.total_unique_patterns
    F = kb.total_pattern_frequencies
    S = kb.distinct_symbols
    e_tot = sum(freqs)
    mat, ens = kernel.ensemble(
        idx,
        sel,
        info,
        np.asarray(freqs, dtype=np.int64),
        spc_arr,
        colmap,
        len(col),
        (F, U, S),
        _LOG10_FLOOR,
    )
    fr = np.array(freqs, dtype=float)
    itfdf = _itfdf(mat, state, spc, col, fr, e_tot)
    confluence, entropy, nentropy, gnentropy, tfidf_l = _ensemble_lists(
        kb, ens, idx.records, sel_l, spc
    )
    per = _per_pattern(info, idx.lens[sel], itfdf)
    pp, ws, pi, groups = _predictive_information(idx, sel, info[:, kernel.SV_E2], freqs, sim_l)
    post_l, prior_l, like_l = _bayesian_lists(fr, sim_l)
    cols: dict[str, list[Any]] = {
        "potential": per["potential"].tolist(),
        "similarity": sim_l,
        "evidence": per["evidence"].tolist(),
        "confidence": per["confidence"].tolist(),
        "snr": per["snr"].tolist(),
        "fragmentation": per["fragmentation"].tolist(),
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
        "tfidf_score": tfidf_l,
        "pattern_probability": pp,
        "weighted_strength": ws,
    }
    return cols, groups


def _top(vals: list[Any] | None, n: int, max_predictions: int) -> list[int]:
    """``rank``: (value is None, -value, name); index order is name order, the sort stable."""
    top_n = max(0, max_predictions)
    if vals is None:
        return list(range(n))[:top_n]
    return sorted(range(n), key=lambda k: -vals[k])[:top_n]


def _assemble(
    recs: list[PatternRecord],
    sel_l: list[int],
    top: list[int],
    built: list[Any],
    cols: dict[str, list[Any]],
) -> list[dict[str, Any]]:
    """The returned predictions: ``output.full_prediction``'s shape, from the columns."""
    potential, sim_l, ev_l = cols["potential"], cols["similarity"], cols["evidence"]
    cf_l, sn_l, frag_l, freqs = (
        cols["confidence"],
        cols["snr"],
        cols["fragmentation"],
        cols["frequency"],
    )
    confluence, pi, itf_l = (
        cols["confluence"],
        cols["predictive_information"],
        cols["itfdf_similarity"],
    )
    entropy, nentropy = cols["entropy"], cols["normalized_entropy"]
    gnentropy, tfidf_l = cols["global_normalized_entropy"], cols["tfidf_score"]
    pp, ws = cols["pattern_probability"], cols["weighted_strength"]
    post_l, prior_l, like_l = (
        cols["bayesian_posterior"],
        cols["bayesian_prior"],
        cols["bayesian_likelihood"],
    )
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
                "tfidf_score": tfidf_l[k],
                "pattern_probability": pp[k],
                "weighted_strength": ws[k],
                "bayesian_posterior": post_l[k],
                "bayesian_prior": prior_l[k],
                "bayesian_likelihood": like_l[k],
            }
        )
    return preds


#: orjson options of every stored and sent record (stream/codecs.py): nested dicts sorted too.
_JSON_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS

#: Where each key of a kernel-path prediction (``_assemble``) comes from when the kernel
#: writes the JSON: one of its lists, a column of the value table (``_table``: the columns of
#: ``_columns``, names and emotives), or a constant.  Written in sorted key order, as orjson
#: writes the dict.
_LISTS = {
    "extras": kernel.J_EXTRAS,
    "future": kernel.J_FUTURE,
    "matches": kernel.J_MATCHES,
    "missing": kernel.J_MISSING,
    "past": kernel.J_PAST,
    "present": kernel.J_PRESENT,
    "sequence": kernel.J_SEQUENCE,
}
_CONSTANTS = {
    "anomalies": b"[]",
    "type": b'"prototypical"',
    "weighted_confidence": b"null",
    "weighted_evidence": b"null",
    "weighted_similarity": b"null",
    "weighted_snr": b"null",
}
#: The value table's columns: names and emotives, then ``_columns``' output columns.
_TABLE = (
    "name",
    "emotives",
    "bayesian_likelihood",
    "bayesian_posterior",
    "bayesian_prior",
    "confidence",
    "confluence",
    "entropy",
    "evidence",
    "fragmentation",
    "frequency",
    "global_normalized_entropy",
    "itfdf_similarity",
    "normalized_entropy",
    "pattern_probability",
    "potential",
    "predictive_information",
    "similarity",
    "snr",
    "tfidf_score",
    "weighted_strength",
)


def _layout() -> list[kernel.JsonField]:
    keys = sorted([*_LISTS, *_CONSTANTS, *_TABLE])
    layout: list[kernel.JsonField] = []
    for i, key in enumerate(keys):
        prefix = (b"{" if i == 0 else b",") + orjson.dumps(key) + b":"
        if key in _LISTS:
            layout.append((prefix, _LISTS[key], None))
        elif key in _CONSTANTS:
            layout.append((prefix, kernel.J_CONST, _CONSTANTS[key]))
        else:
            layout.append((prefix, kernel.J_COLUMN, _TABLE.index(key)))
    return layout


_LAYOUT = _layout()

#: future_potentials items' keys in sorted order: the table's 3 columns and the future.
_FPS_LAYOUT: list[kernel.JsonField] = [
    (b'{"aggregate_potential":', kernel.J_COLUMN, 0),
    (b',"future":', kernel.J_FUTURE, None),
    (b',"supporting_patterns":', kernel.J_COLUMN, 1),
    (b',"total_weighted_frequency":', kernel.J_COLUMN, 2),
]
_NO_EMOTIVES: dict[str, float] = {}


def _table(
    recs: list[PatternRecord], sel_l: list[int], top: list[int], cols: dict[str, list[Any]]
) -> bytes:
    """The ``top`` survivors' values of every ``_TABLE`` column, encoded by orjson at once."""
    picked = [recs[sel_l[k]] for k in top]
    pick = operator.itemgetter(*top) if len(top) > 1 else (lambda col: (col[top[0]],))
    return orjson.dumps(
        [
            [r.name for r in picked],
            [average_emotives(r.emotives) if r.emotives else _NO_EMOTIVES for r in picked],
            *(pick(cols[key]) for key in _TABLE[2:]),
        ],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
