"""The generic full path: predictions for a multi-symbol STM (spec §5.3-5.6).

Why a module of its own: this is the reference path, the composition of the steps in
order (candidates, affinity weights, the ensemble metrics, ranking), which every other
path must reproduce byte for byte; it is the only path for an affinity emotive, fuzzy
tokens, character matching or a filter pipeline, and for any session without the C kernel.
"""

from __future__ import annotations

from typing import Any

from ..knowledge import KnowledgeBase
from .affinity import affinity_weights, weigh_candidates
from .candidates import select_candidates
from .ensemble import (
    apply_bayesian,
    apply_potentials,
    itfdf_distances,
    pattern_metrics,
    predictive_information,
    symbol_probabilities,
)
from .output import full_prediction, rank
from .params import MatcherOptions, PredictParams

__all__ = ["full_path"]


def full_path(
    kb: KnowledgeBase,
    stm: list[list[str]],
    state: list[str],
    params: PredictParams,
    options: MatcherOptions,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ranked predictions, future_potentials) of ``stm`` (``state`` = its flat symbols)."""
    cands = select_candidates(kb, stm, state, params, options)
    if not cands:
        return [], []
    weights = affinity_weights(kb, state, params.affinity_emotive)
    if weights:
        weigh_candidates(cands, weights, state)

    # Ensemble order = name order, so every tie below (future groups) is deterministic.
    cands.sort(key=lambda c: c.rec.name)
    spc = symbol_probabilities(kb, cands)
    freqs = [c.rec.frequency if c.rec.frequency else 1 for c in cands]
    e_tot = sum(freqs)
    distances = itfdf_distances(cands, state, spc)
    preds = [
        full_prediction(
            c, freqs[i], pattern_metrics(kb, c, freqs[i], float(distances[i]), e_tot, spc)
        )
        for i, c in enumerate(cands)
    ]
    future_potentials = predictive_information(preds)
    apply_bayesian(preds)
    use_weighted = bool(weights) and any(p["weighted_evidence"] is not None for p in preds)
    apply_potentials(preds, use_weighted)
    return rank(preds, params.rank_sort_algo, params.max_predictions), future_potentials
