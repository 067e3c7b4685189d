"""Token sequence matching: true LCS length and difflib-compatible matching blocks.

KATO scores similarity with the *true* longest common subsequence (rapidfuzz
``LCSseq``) but derives matches, past/present and missing/extras from the greedy
block algorithm of ``difflib.SequenceMatcher`` with no junk and no autojunk
(spec §5.3 B/C).  Both are reproduced here; the block functions return exactly what
``difflib.SequenceMatcher(None, a, b, autojunk=False)`` returns.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from rapidfuzz.distance import LCSseq

Block = tuple[int, int, int]
Opcode = tuple[str, int, int, int, int]


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of two token sequences (bit-parallel)."""
    if not a or not b:
        return 0
    return int(LCSseq.similarity(a, b))


def token_similarity(lcs: int, total: int) -> float:
    """KATO's reported similarity, evaluated in its exact float order (``x100`` then ``/100``)."""
    if total <= 0:
        return 0.0
    return ((2.0 * lcs) / total) * 100.0 / 100.0


def _b2j(b: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    out: dict[Hashable, list[int]] = {}
    for j, x in enumerate(b):
        out.setdefault(x, []).append(j)
    return out


def _longest_match(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    b2j: dict[Hashable, list[int]],
    alo: int,
    ahi: int,
    blo: int,
    bhi: int,
) -> Block:
    """difflib's ``find_longest_match`` with an empty junk set (ties: smallest i, then j)."""
    besti, bestj, bestsize = alo, blo, 0
    j2len: dict[int, int] = {}
    for i in range(alo, ahi):
        j2lenget = j2len.get
        newj2len: dict[int, int] = {}
        for j in b2j.get(a[i], ()):
            if j < blo:
                continue
            if j >= bhi:
                break
            k = j2lenget(j - 1, 0) + 1
            newj2len[j] = k
            if k > bestsize:
                besti, bestj, bestsize = i - k + 1, j - k + 1, k
        j2len = newj2len
    # difflib's junk-extension loops; with no junk they only extend over equal elements.
    while besti > alo and bestj > blo and a[besti - 1] == b[bestj - 1]:
        besti, bestj, bestsize = besti - 1, bestj - 1, bestsize + 1
    while (
        besti + bestsize < ahi
        and bestj + bestsize < bhi
        and a[besti + bestsize] == b[bestj + bestsize]
    ):
        bestsize += 1
    return besti, bestj, bestsize


def index_b(b: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    """Positions of each element of ``b``: build once, reuse for many ``a`` against one ``b``."""
    return _b2j(b)


def matching_blocks(
    a: Sequence[Hashable], b: Sequence[Hashable], b2j: dict[Hashable, list[int]] | None = None
) -> list[Block]:
    """``get_matching_blocks()`` of difflib (no junk, no autojunk), sentinel included."""
    la, lb = len(a), len(b)
    if b2j is None:
        b2j = _b2j(b)
    queue = [(0, la, 0, lb)]
    found: list[Block] = []
    while queue:
        alo, ahi, blo, bhi = queue.pop()
        i, j, k = x = _longest_match(a, b, b2j, alo, ahi, blo, bhi)
        if k:
            found.append(x)
            if alo < i and blo < j:
                queue.append((alo, i, blo, j))
            if i + k < ahi and j + k < bhi:
                queue.append((i + k, ahi, j + k, bhi))
    found.sort()
    i1 = j1 = k1 = 0
    merged: list[Block] = []
    for i2, j2, k2 in found:
        if i1 + k1 == i2 and j1 + k1 == j2:
            k1 += k2
        else:
            if k1:
                merged.append((i1, j1, k1))
            i1, j1, k1 = i2, j2, k2
    if k1:
        merged.append((i1, j1, k1))
    merged.append((la, lb, 0))
    return merged


def opcodes(
    a: Sequence[Hashable], b: Sequence[Hashable], b2j: dict[Hashable, list[int]] | None = None
) -> list[Opcode]:
    """``get_opcodes()`` of difflib (no junk, no autojunk)."""
    i = j = 0
    out: list[Opcode] = []
    for ai, bj, size in matching_blocks(a, b, b2j):
        tag = ""
        if i < ai and j < bj:
            tag = "replace"
        elif i < ai:
            tag = "delete"
        elif j < bj:
            tag = "insert"
        if tag:
            out.append((tag, i, ai, j, bj))
        i, j = ai + size, bj + size
        if size:
            out.append(("equal", ai, i, bj, j))
    return out


def diff_missing_extras(
    a: Sequence[str], b: Sequence[str], b2j: dict[Hashable, list[int]] | None = None
) -> tuple[list[str], list[str]]:
    """Tokens of ``a`` deleted/replaced and tokens of ``b`` inserted/replaced (KATO's flat diff)."""
    missing: list[str] = []
    extras: list[str] = []
    for tag, i1, i2, j1, j2 in opcodes(a, b, b2j):
        if tag == "equal":
            continue
        if tag != "insert":
            missing.extend(a[i1:i2])
        if tag != "delete":
            extras.extend(b[j1:j2])
    return missing, extras
