"""Ranking and the shape of a full-path prediction (what a client reads).

Why a module of its own: the field order of a prediction is part of KATO's JSON output
(byte-identical responses), and the ranking rule (our deterministic tie-break by name) is
one function every path shares.  The C-kernel path builds the full shape from columns in
:mod:`.kernel_path` (same keys in the same order, checked byte for byte against
:func:`full_prediction` by tests/core/test_kernel.py); the fast path's flat shape is built
in :mod:`.fast_path`, its only producer, in its one loop.
"""

from __future__ import annotations

from typing import Any

from ..knowledge import average_emotives
from .matching import Candidate

__all__ = ["EnsembleMetrics", "full_prediction", "rank"]

#: Per-prediction values of the ensemble step (``ensemble.pattern_metrics``):
#: (confluence, entropy, normalized_entropy, global_normalized_entropy, itfdf, tfidf).
EnsembleMetrics = tuple[float, float, float, float, float, float]


def rank(preds: list[dict[str, Any]], key: str, limit: int) -> list[dict[str, Any]]:
    """Top ``limit`` by ``key`` descending, ties by pattern name (our deterministic order).

    A ``None`` value (weighted_* without affinity; KATO answers 500) ranks last.
    """

    def k(p: dict[str, Any]) -> tuple[bool, float, str]:
        v = p.get(key)
        return (v is None, -(v if v is not None else 0.0), p["name"])

    return sorted(preds, key=k)[: max(0, limit)]


def full_prediction(c: Candidate, freq: int, m: EnsembleMetrics) -> dict[str, Any]:
    """A full-path prediction (§5.5) before the ensemble's last steps: potential,
    predictive information and the Bayesian fields are filled in afterwards."""
    confluence, entropy, nentropy, gnentropy, itfdf, tfidf = m
    rec = c.rec
    return {
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
