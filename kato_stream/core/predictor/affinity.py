"""Affinity weighting: the weighted_* metrics for a session's ``affinity_emotive``.

Why a module of its own: spec §5.4 E is one rule (a symbol's weight is its affinity for
the emotive per occurrence) applied by both the fast path and the full path, and only
when a session names an emotive; the C-kernel path never runs with one.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..knowledge import KnowledgeBase
from .matching import Candidate

__all__ = ["affinity_weights", "weigh_candidates", "wsum"]


def affinity_weights(
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


def wsum(weights: dict[str, float], tokens: Iterable[str]) -> float:
    return sum(weights.get(t, 0.0) for t in tokens)


def weigh_candidates(cands: list[Candidate], weights: dict[str, float], state: list[str]) -> None:
    """Set the full path's weighted_* metrics of every candidate (§5.4 E)."""
    ws = wsum(weights, state)
    for c in cands:
        wm = wsum(weights, c.matches)
        wp = wsum(weights, c.rec.flat)
        wpr = wsum(weights, c.present_flat)
        wx = wsum(weights, (s for e in c.extras for s in e))
        den = ws + wp
        c.w_sim = 2.0 * wm / den if den > 0 else None
        c.w_ev = wm / wp if wp > 0 else 0.0
        c.w_conf = wm / wpr if wpr > 0 else 0.0
        c.w_snr = wm / (wm + wx) if (wm + wx) > 0 else 0.0
