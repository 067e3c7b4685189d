"""KATO's optional candidate filter pipeline (``filter_pipeline``, spec §7.4).

Stages run in list order.  Database stages (``length``, ``jaccard``, ``minhash``) read
the whole KB when they come first and narrow the current set afterwards; Python stages
(``bloom``, ``rapidfuzz``) fail in KATO when no database stage ran before them, and a
failing stage is skipped.  A stage that leaves no candidates stops the pipeline; a
pipeline that never loaded candidates yields none.  ``bloom`` is a no-op in KATO (it
raises on event-structured data) and so here.

``minhash`` is KATO's hybrid stage: a database part keeps the patterns whose stored LSH
bands share a value with the state's bands, then a Python part keeps those whose
MinHash-estimated Jaccard (equal signature slots / 100) is ``>= minhash_threshold``.
Signatures and bands are KATO's own (datasketch, seed 1, SHA-1; see
:mod:`.prefilter`), so the same patterns pass, including KATO's estimation errors.
Parameters are read as KATO reads them: ``x or default`` (so 0 means the default),
``bands := num_hashes // rows`` when ``bands * rows != num_hashes``.  Pattern signatures
are always the stored 100-permutation ones, so with ``num_hashes != 100`` the Python part
fails in KATO (datasketch refuses to compare signatures of different lengths) and the
band part's result stands; with rows other than 5 no band can match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rapidfuzz import fuzz

from .knowledge import KnowledgeBase, PatternRecord
from .matcher import lcs_length, matching_blocks
from .prefilter import MINHASH_PERMS, PatternIndex, band_hashes, pattern_index

if TYPE_CHECKING:
    from .predictor.params import PredictParams


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
    min_overlap = p.jaccard_min_overlap or 2
    out = []
    for r in recs:
        ts = set(r.flat)
        inter = len(ts & q)
        union = len(ts | q)
        if inter >= min_overlap and union > 0 and inter * 1.0 / union >= thr:
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


class _MinHashQuery:
    """KATO's ``MinHashFilter`` for one state; construction fails where KATO's does."""

    def __init__(self, idx: PatternIndex, state: list[str], p: PredictParams) -> None:
        self.threshold = p.minhash_threshold or 0.7
        rows = p.minhash_rows or 5
        n = p.minhash_num_hashes or 100
        bands = p.minhash_bands or 20
        if bands * rows != n:
            bands = n // rows
        if n < 0 or n > 1 << 32:
            # datasketch: negative dimensions / "Cannot have more than 2**32 permutations"
            raise ValueError(f"invalid number of permutations: {n}")
        self.n = n
        self.sig = idx.state_signature(state)[: min(n, MINHASH_PERMS)]
        self.bands = frozenset(band_hashes(self.sig, bands, rows))

    def band_stage(self, idx: PatternIndex, recs: list[PatternRecord]) -> list[PatternRecord]:
        """``hasAny(lsh_bands, state_bands)``."""
        return [r for r in recs if not self.bands.isdisjoint(idx.minhash(r)[1])]

    def verify(self, idx: PatternIndex, recs: list[PatternRecord]) -> list[PatternRecord]:
        """``MinHash.jaccard(stored signature) >= threshold``; raises as datasketch does
        when the state's signature length differs from the stored 100."""
        if self.n != MINHASH_PERMS:
            raise ValueError("different numbers of permutation functions")
        out = []
        for r in recs:
            est = float(np.count_nonzero(self.sig == idx.minhash(r)[0])) / float(self.n)
            if est >= self.threshold:
                out.append(r)
        return out


def _minhash(
    kb: KnowledgeBase, current: list[PatternRecord] | None, state: list[str], p: PredictParams
) -> list[PatternRecord] | None:
    """The stage's candidates; ``current`` unchanged where KATO's stage fails outright."""
    idx = pattern_index(kb)
    try:
        q = _MinHashQuery(idx, state, p)
    except ValueError:  # KATO: filter instance not created, stage skipped
        return current
    out = q.band_stage(idx, list(kb.patterns.values()) if current is None else current)
    try:
        return q.verify(idx, out)
    except ValueError:  # KATO: the Python part raised after the database part had run
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
        elif name == "minhash":
            current = _minhash(kb, current, state, p)
            if current is None:
                continue
        elif name in _PY:
            if current is None:
                continue
            current = _PY[name](current, state, p)
        else:
            continue  # unknown names and bloom (a no-op in KATO)
        if not current:
            return []
    return current or []
