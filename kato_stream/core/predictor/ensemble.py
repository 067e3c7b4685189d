"""Metrics over the candidate set: what makes one prediction's numbers depend on the others.

Why a module of its own: spec §5.5 computes, over all candidates together, the symbol
probabilities, the itfdf similarity (a cosine against the state on a shared symbol axis),
confluence, the entropies, tfidf, the predictive information with the future groups
(``future_potentials``), the Bayesian fields and the potential.  Every float is computed in
KATO's evaluation order; the C-kernel path (:mod:`.kernel_path`) shares
:func:`cosine_distances`, :func:`bayesian` and :func:`tfidf` and reproduces the rest.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from functools import reduce
from itertools import chain
from operator import add
from typing import Any

import numpy as np
import numpy.typing as npt

from ..knowledge import KnowledgeBase, Precomputed
from .matching import Candidate
from .output import EnsembleMetrics

__all__ = [
    "apply_bayesian",
    "apply_potentials",
    "bayesian",
    "confluence",
    "cosine_distances",
    "entropies",
    "future_key",
    "itfdf_distances",
    "pattern_metrics",
    "predictive_information",
    "symbol_probabilities",
    "tfidf",
]

F64 = npt.NDArray[np.float64]


def symbol_probabilities(kb: KnowledgeBase, cands: list[Candidate]) -> dict[str, float]:
    """``pmf[s] / U`` of every matched or missing symbol of the candidates (0 if unknown)."""
    U = kb.total_unique_patterns
    pmf = kb.pmf
    known = kb.symbol_freq
    spc: dict[str, float] = {}
    for c in cands:
        for s in chain(c.matches, (x for e in c.missing for x in e)):
            if s not in spc:
                spc[s] = float(pmf.get(s, 0) / U) if (s in known and U > 0) else 0.0
    return spc


def cosine_distances(mat: F64, state_vec: F64, n: int) -> F64:
    """1 - cosine of each row of ``mat`` with ``state_vec`` (numpy exactly as KATO)."""
    state_norm = np.linalg.norm(state_vec)
    if state_norm > 0:
        dots = mat @ state_vec
        norms = np.linalg.norm(mat, axis=1)
        denom = norms * state_norm
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = np.where(denom > 0, dots / denom, 0.0)
        distances: F64 = 1.0 - cos
        return distances
    return np.ones(n)


def itfdf_distances(cands: list[Candidate], state: list[str], spc: dict[str, float]) -> F64:
    """itfdf's cosine distances: KATO's sorted symbol axis, count-weighted probabilities."""
    gsyms = sorted(set(chain.from_iterable(c.present_flat for c in cands)) | set(state))
    idx = {s: i for i, s in enumerate(gsyms)}
    state_vec = np.zeros(len(gsyms))
    for s, cnt in Counter(state).items():
        state_vec[idx[s]] = spc.get(s, 0) * cnt
    mat = np.zeros((len(cands), len(gsyms)))
    for i, c in enumerate(cands):
        for s, cnt in Counter(c.present_flat).items():
            mat[i, idx[s]] = spc.get(s, 0) * cnt
    return cosine_distances(mat, state_vec, len(cands))


def confluence(present: list[str], spc: dict[str, float], p_e_h: float) -> float:
    """P(e|h) * (1 - product of the present symbols' probabilities), in log10 space."""
    if not present:
        return 0.0
    logs: list[float] = []
    for s in present:
        prob = spc.get(s, 1e-10)
        logs.append(math.log10(prob) if prob > 0 else math.log10(1e-10))
    return p_e_h * (1 - 10 ** reduce(add, logs))


def entropies(
    present: list[str], spc: dict[str, float], S: int, pre: Precomputed | None
) -> tuple[float, float, float]:
    """(entropy, normalized_entropy, global_normalized_entropy): finalize-training's
    whole-pattern values when present, else over the present symbols."""
    if pre is not None:
        return pre.entropy, pre.normalized_entropy, pre.global_normalized_entropy
    if not present:
        return 0.0, 0.0, 0.0
    counts = Counter(present)
    plen = len(present)
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
    return entropy, nentropy, gnentropy


def tfidf(
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


def pattern_metrics(
    kb: KnowledgeBase,
    c: Candidate,
    freq: int,
    distance: float,
    e_tot: int,
    spc: dict[str, float],
) -> EnsembleMetrics:
    """(confluence, entropy, normalized_entropy, global_normalized_entropy, itfdf, tfidf)."""
    F = kb.total_pattern_frequencies
    p_e_h = float(freq / F) if F > 0 else 0.0
    itfdf = 1 - (distance * freq / e_tot) if e_tot > 0 else 0.0
    ps = c.present_flat
    pre = kb.precomputed.get(c.rec.name)
    entropy, nentropy, gnentropy = entropies(ps, spc, kb.distinct_symbols, pre)
    tf = tfidf(pre.tf_vector if pre is not None else None, ps, spc, kb.total_unique_patterns)
    return confluence(ps, spc, p_e_h), entropy, nentropy, gnentropy, itfdf, tf


def future_key(future: list[list[str]]) -> str:
    normalized = [sorted(e) for e in future]
    return hashlib.sha1(json.dumps(normalized, sort_keys=True).encode()).hexdigest()


def _future_groups(
    preds: list[dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], list[str | None]]:
    """Predictions grouped by their (sorted) future events, with weighted frequency sums."""
    groups: dict[str, dict[str, Any]] = {}
    keys: list[str | None] = []
    for p in preds:
        fut = p["future"]
        if not fut:
            keys.append(None)
            continue
        fk = future_key(fut)
        keys.append(fk)
        g = groups.get(fk)
        if g is None:
            g = groups[fk] = {"future": fut, "total_weighted_frequency": 0.0, "count": 0}
        g["total_weighted_frequency"] += p["frequency"] * p["similarity"]
        g["count"] += 1
    return groups, keys


def predictive_information(preds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pattern_probability, weighted_strength, predictive_information; future_potentials."""
    fsum = sum(p["frequency"] for p in preds)
    if fsum == 0:
        return []
    for p in preds:
        p["pattern_probability"] = p["frequency"] / fsum
        p["weighted_strength"] = p["similarity"] * p["pattern_probability"]
    groups, keys = _future_groups(preds)
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


def bayesian(fr: F64, sims: F64) -> tuple[F64, F64] | None:
    """(posteriors, priors) from frequencies and similarities (§5.5 item 13), numpy exactly
    as KATO; ``None`` when the frequencies sum to 0."""
    sum_f = fr.sum()
    if not sum_f > 0:
        return None
    priors = fr / sum_f
    ev_sum = np.dot(sims, priors)
    posts = (sims * priors) / ev_sum if ev_sum > 0 else np.zeros(len(fr))
    return posts, priors


def apply_bayesian(preds: list[dict[str, Any]]) -> None:
    fr = np.array([p["frequency"] for p in preds], dtype=float)
    sims = np.array([p["similarity"] for p in preds], dtype=float)
    res = bayesian(fr, sims)
    if res is None:
        for p in preds:
            p["bayesian_likelihood"] = p["similarity"]
        return
    posts, priors = res
    for i, p in enumerate(preds):
        p["bayesian_posterior"] = float(posts[i])
        p["bayesian_prior"] = float(priors[i])
        p["bayesian_likelihood"] = float(sims[i])


def apply_potentials(preds: list[dict[str, Any]], use_weighted: bool) -> None:
    """potential = (evidence + confidence) * snr + itfdf + 1/(fragmentation + 1)."""
    for p in preds:
        if use_weighted:
            ev, cf, sn = p["weighted_evidence"], p["weighted_confidence"], p["weighted_snr"]
        else:
            ev, cf, sn = p["evidence"], p["confidence"], p["snr"]
        frag = p["fragmentation"]
        fc = 0.0 if frag == -1 else 1.0 / (frag + 1)
        p["potential"] = float((ev + cf) * sn + p["itfdf_similarity"] + fc)
