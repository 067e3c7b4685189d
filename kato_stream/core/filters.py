"""KATO's optional candidate filter pipeline (``filter_pipeline``, spec §7.4).

Stages run in list order.  Database stages (``length``, ``jaccard``, ``minhash``) read
the whole KB when they come first and narrow the current set afterwards; Python stages
(``bloom``, ``rapidfuzz``) fail in KATO when no database stage ran before them, and a
failing stage is skipped.  A stage that leaves no candidates stops the pipeline; a
pipeline that never loaded candidates yields none.  ``bloom`` is a no-op in KATO (it
raises on event-structured data) and so here.  ``minhash`` is not implemented yet and is
skipped like a failing stage (candidates unchanged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rapidfuzz import fuzz

from .knowledge import KnowledgeBase, PatternRecord
from .matcher import lcs_length, matching_blocks

if TYPE_CHECKING:
    from .predictions import PredictParams


def _length_stage(
    recs: list[PatternRecord], state: list[str], p: PredictParams
) -> list[PatternRecord]:
    lo = max(1, int(len(state) * (p.length_min_ratio or 0.5)))
    hi = int(len(state) * (p.length_max_ratio or 2.0))
    return [r for r in recs if lo <= r.length <= hi]


def _jaccard_stage(
    recs: list[PatternRecord], state: list[str], p: PredictParams
) -> list[PatternRecord]:
    q = set(state)
    thr = p.jaccard_threshold or 0.3
    out = []
    for r in recs:
        ts = set(r.flat)
        inter = len(ts & q)
        union = len(ts | q)
        if inter >= p.jaccard_min_overlap and union > 0 and inter / union >= thr:
            out.append(r)
    return out


def _rapidfuzz_stage(
    recs: list[PatternRecord], state: list[str], p: PredictParams
) -> list[PatternRecord]:
    cutoff = p.recall_threshold or 0.1
    out = []
    for r in recs:
        if p.use_token_matching:
            total = len(r.flat) + len(state)
            sim = 2.0 * lcs_length(r.flat, state) / total if total > 0 else 0.0
        else:
            sim = fuzz.ratio(" ".join(r.flat), " ".join(state)) / 100.0
        if sim < cutoff:
            continue
        if len(matching_blocks(r.flat, state)) == 1 and cutoff > 0.0:
            continue
        out.append(r)
    return out


_DB = {"length": _length_stage, "jaccard": _jaccard_stage}
_PY = {"rapidfuzz": _rapidfuzz_stage}


def run_pipeline(kb: KnowledgeBase, state: list[str], p: PredictParams) -> list[PatternRecord]:
    """Candidates after the configured stages, in KB order."""
    current: list[PatternRecord] | None = None
    for name in p.filter_pipeline:
        if name in _DB:
            base = list(kb.patterns.values()) if current is None else current
            current = _DB[name](base, state, p)
        elif name in _PY:
            if current is None:
                continue
            current = _PY[name](current, state, p)
        else:
            continue  # unknown, bloom (no-op in KATO) and minhash (not implemented)
        if not current:
            return []
    return current or []
