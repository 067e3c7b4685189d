"""The fast path: predictions for a single-symbol STM (spec §5.7).

Why a module of its own: KATO answers a one-symbol state with its own candidates (patterns
whose first token is the symbol), its own flat output (its shape is built here) and its own
formulas, and does not
recompute ``future_potentials``.  Without an affinity emotive the unweighted potential
depends on the pattern length only, so the order per first token is cached in the KB
(``kb.caches.first_token``) and only the top ``max_predictions`` are built.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from rapidfuzz import fuzz

from ..knowledge import FirstTokenRanking, KnowledgeBase, PatternRecord, average_emotives
from .affinity import affinity_weights, wsum
from .output import rank
from .params import PredictParams

__all__ = ["fast_path", "first_token_ranking"]


def first_token_ranking(kb: KnowledgeBase, symbol: str) -> list[PatternRecord]:
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


def _weighted(
    weights: dict[str, float], symbol: str, flat: tuple[str, ...]
) -> tuple[float | None, float, float, float]:
    """(weighted_similarity, weighted_evidence, weighted_confidence, weighted_snr)."""
    wm = weights.get(symbol, 0.0)
    wp = wsum(weights, flat)
    den = wm + wp
    w_sim = 2.0 * wm / den if den > 0 else None
    w_ev = wm / wp if wp > 0 else 0.0
    w_conf = wm / wm if wm > 0 else 0.0
    w_snr = wm / (wm + 0.0) if wm > 0 else 0.0
    return w_sim, w_ev, w_conf, w_snr


def _predictions(
    cands: list[PatternRecord],
    symbol: str,
    token_matching: bool,
    weights: dict[str, float] | None,
) -> list[dict[str, Any]]:
    """One flat prediction per candidate (§5.7), in KATO's field order.

    Built in one loop (the shape is written here, the only place it is produced): the fast
    path answers in well under a millisecond, so a call and tuples per prediction show.
    """
    out: list[dict[str, Any]] = []
    w_sim: float | None
    w_ev: float | None
    w_conf: float | None
    w_snr: float | None
    for rec in cands:
        flat = rec.flat
        n = len(flat)
        similarity = (
            2.0 * 1 / (n + 1) if token_matching else fuzz.ratio(" ".join(flat), symbol) / 100.0
        )
        evidence = 1 / n if n > 0 else 0.0
        confidence = 1.0
        snr = 1.0
        if weights:
            w_sim, w_ev, w_conf, w_snr = _weighted(weights, symbol, flat)
        else:
            w_sim = w_ev = w_conf = w_snr = None
        ev = w_ev if w_ev is not None else evidence
        cf = w_conf if w_conf is not None else confidence
        sn = w_snr if w_snr is not None else snr
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
                "potential": (ev + cf) * sn + 1 / (0 + 1),
            }
        )
    return out


def fast_path(kb: KnowledgeBase, symbol: str, params: PredictParams) -> list[dict[str, Any]]:
    n_cands = len(kb.by_first_token.get(symbol, ()))
    if not n_cands:
        return []
    weights = None
    cands: list[PatternRecord]
    if not params.affinity_emotive and n_cands > params.max_predictions:
        # Unweighted potential is (1/n + 1.0) * 1.0 + 1.0: rank first, build only the top.
        # The order depends only on the patterns, so it is cached per KB version.
        cands = first_token_ranking(kb, symbol)[: max(0, params.max_predictions)]
    else:
        cands = list(kb.candidates_first_token(symbol))
    if params.affinity_emotive:
        weights = affinity_weights(
            kb, chain([symbol], (s for r in cands for s in r.flat)), params.affinity_emotive
        )
    out = _predictions(cands, symbol, params.fast_path_token_matching, weights)
    return rank(out, "potential", params.max_predictions)
