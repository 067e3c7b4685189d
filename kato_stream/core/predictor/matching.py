"""One stored pattern against the state: the per-pattern part of a prediction.

Why a module of its own: this is spec §5.3 C/D and §5.4 for a single pattern (matching
blocks, matches and anomalies, the past/present/future split with KATO's fix-up, missing
and extras, evidence, confidence, snr, fragmentation), the same whichever way candidates
were selected (:mod:`.candidates`); the C kernel reproduces it (tests/core/test_kernel.py
compares its inputs of :func:`pre_potential` with :func:`build_candidate`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

from ..knowledge import Events, PatternRecord
from ..matcher import diff_missing_extras, index_b, lcs_length, matching_blocks, token_similarity

__all__ = ["Candidate", "build_candidate", "passes", "pre_potential", "similarity"]

Block = tuple[int, int, int]


@dataclass
class Candidate:
    """One pattern's per-pattern metrics (the weighted_* ones are set by :mod:`.affinity`)."""

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


def similarity(rec: PatternRecord, state: list[str], state_str: str, token_mode: bool) -> float:
    if token_mode:
        return token_similarity(lcs_length(rec.flat, state), len(rec.flat) + len(state))
    return float(fuzz.ratio(" ".join(rec.flat), state_str)) / 100.0


def passes(similarity: float, threshold: float) -> bool:
    """rapidfuzz's cutoff (score >= thr*100 - 1e-6) then KATO's inclusive test."""
    return similarity * 100.0 >= threshold * 100.0 - 1e-6 and similarity >= threshold


def pre_potential(c: Candidate) -> float:
    """The potential without itfdf, by which KATO cuts candidates to 3*max (§5.5.1)."""
    frag = c.fragmentation
    return (c.evidence + c.confidence) * c.snr + (0.0 if frag == -1 else 1.0 / (frag + 1))


def _fuzzy_matches(
    pattern: Sequence[str], state: list[str], fuzzy: float
) -> tuple[list[str], list[dict[str, Any]], int]:
    """(matches, anomalies, flat extras count) by fuzzy token matching (§5.3 D)."""
    anomalies: list[dict[str, Any]] = []
    matches: list[str] = []
    fuzzy_map: dict[str, tuple[str, float]] = {}
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
    n_extras = sum(1 for st in state if st not in fuzzy_map)
    return matches, anomalies, n_extras


def _flat_split(
    pattern: tuple[str, ...], blocks: list[Block]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(past, present) of the flat pattern: before the first block, first to last block."""
    nb = len(blocks)
    if nb >= 2:
        i0, _j0, _n0 = blocks[0]
        i1, _j1, n1 = blocks[-1]
        return pattern[:i0], (pattern[i0 : i1 + n1] if i1 + n1 > i0 else pattern[i0:])
    if nb == 1:
        i0, _j0, n0 = blocks[0]
        return pattern[:i0], pattern[i0 : i0 + n0]
    return (), pattern


def _event_split(
    seq: Events, n_past: int, n_present: int, matches: list[str]
) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """Past/present/future events from flat counts, then the "first match in last past
    event" fix-up (§5.3 C)."""
    c1 = n_past
    c2 = 0
    ev = 0
    while c2 < c1:
        c2 += len(seq[ev])
        ev += 1
    e1 = ev
    c1 += n_present
    while c2 < c1:
        c2 += len(seq[ev])
        ev += 1
    past = [list(e) for e in seq[:e1]]
    present = [list(e) for e in seq[e1:ev]]
    future = [list(e) for e in seq[ev:]]
    if past and matches and matches[0] in past[-1]:
        present.insert(0, past[-1])
        past = past[:-1]
    return past, present, future


def _missing_extras(
    present: list[list[str]], matches: list[str], stm: list[list[str]]
) -> tuple[list[list[str]], list[str], list[list[str]]]:
    """(missing per present event, flat present, extras per STM event) (§5.3 C)."""
    match_set = set(matches)
    missing = [[s for s in e if s not in match_set] for e in present]
    pflat = [s for e in present for s in e]
    pset = set(pflat)
    extras = [[s for s in e if s not in pset] for e in stm]
    return missing, pflat, extras


def build_candidate(
    rec: PatternRecord,
    similarity: float,
    state: list[str],
    stm: list[list[str]],
    threshold: float,
    fuzzy: float,
    b2j: dict[Hashable, list[int]] | None = None,
    blocks: list[Block] | None = None,
    n_extras_flat: int | None = None,
) -> Candidate | None:
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
    if nb == 0 and threshold > 0.0:
        return None
    past_flat, present_flat = _flat_split(pattern, blocks)
    anomalies: list[dict[str, Any]] = []
    if fuzzy > 0.0:
        matches, anomalies, n_extras = _fuzzy_matches(pattern, state, fuzzy)
    else:
        matches = [s for _i, j, n in blocks for s in state[j : j + n]]
        if n_extras_flat is not None:
            n_extras = n_extras_flat
        else:
            n_extras = len(diff_missing_extras(present_flat, state, b2j)[1])

    m = len(matches)
    length = rec.length
    evidence = float(m / length) if length > 0 else 0.0
    fragmentation = float(nb - 1)
    den = 2.0 * m + n_extras
    snr = float((2.0 * m - n_extras) / den) if den > 0 else 0.0

    past, present, future = _event_split(rec.events, len(past_flat), len(present_flat), matches)
    missing, pflat, extras = _missing_extras(present, matches, stm)
    plen = len(pflat)
    confidence = float(m / plen) if plen > 0 else 0.0
    return Candidate(
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
