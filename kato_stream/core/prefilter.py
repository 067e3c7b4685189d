"""Exact candidate pruning for the full path: an inverted index symbol -> patterns.

For a pattern P and the state S, ``B = sum over symbols of min(count_P, count_S)`` is an
upper bound on LCS(P, S).  KATO keeps P only if ``((2L/T)*100)/100 >= threshold``
(T = |P| + |S|), and that value never exceeds ``2L/T`` by more than a few ulps, so a
pattern with ``2B/T < threshold - 1e-9`` can never be kept: skipping it cannot change
the output.  The index is derived from the knowledge base and kept in the KB's
``caches.pattern_index`` (``knowledge.DerivedCaches``), updated incrementally as patterns are appended (a cleared KB gets a fresh ``patterns``
dict, which resets the index).

It also carries what KATO's ``minhash`` filter reads from ClickHouse (spec §4.7, §7.4):
each pattern's MinHash signature and LSH band hashes, computed exactly as KATO stores
them (datasketch ``MinHash(num_perm=100, seed=1)`` over SHA-1 32-bit token hashes, 20
bands of 5 rows, ``abs(hash(tuple(band)))``).  Everything is a pure function of the
tokens: the permutations come from numpy's ``RandomState(1)``, whose stream numpy keeps
stable, and Python's hash of a tuple of ints does not depend on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import cache
from itertools import islice
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from .knowledge import KnowledgeBase, PatternRecord

_MARGIN = 1e-9
_A = TypeVar("_A", npt.NDArray[np.int32], npt.NDArray[np.int64])


class PatternIndex:
    """Per-KB derived arrays: pattern order, flat lengths and symbol postings."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.patterns_ref = kb.patterns
        self.records: list[PatternRecord] = []
        self.names: list[str] = []  # records[i].name (immutable), for C-speed gathers
        self._lens: list[int] = []
        self.lens: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._post: dict[str, tuple[list[int], list[int]]] = {}
        self._arrays: dict[str, tuple[npt.NDArray[np.intp], npt.NDArray[np.int32]]] = {}
        # Each distinct token as one code point, so rapidfuzz runs token LCS on plain str.
        self.codes: dict[str, str] = {}
        self.token_of: dict[int, str] = {}  # int code (ord) -> token, pattern tokens only
        self.n_codes = 0x100  # one past the largest pattern-token code
        self.token_list: list[str | None] = []  # token_list[code] = token_of[code] or None
        self._token_json: list[bytes | None] = []  # token_list's items JSON-encoded
        self.encoded: list[str] = []
        # Int-coded copies for the C kernel (kernel.py), grown on demand by ``coded()``:
        # token codes (= ord of the code point) and event lengths, concatenated.
        self._evlens: list[list[int]] = []
        self._n_coded = 0
        self._flat = np.zeros(0, dtype=np.int32)
        self._offs = np.zeros(1, dtype=np.int64)
        self._evlen = np.zeros(0, dtype=np.int32)
        self._evoffs = np.zeros(1, dtype=np.int64)
        # minhash filter: permuted hash vector per pattern token, (signature, band hashes)
        # per pattern name (names are content hashes, so an entry never goes stale)
        self._phv: dict[str, npt.NDArray[np.uint64]] = {}
        self._minhash: dict[str, tuple[npt.NDArray[np.uint64], frozenset[int]]] = {}
        self.sync(kb)

    def code(self, token: str) -> str:
        c = self.codes.get(token)
        if c is None:
            n = len(self.codes) + 0x100
            if n >= 0xD800:
                n += 0x800  # skip the surrogate block
            c = self.codes[token] = chr(n)
            self.token_of[n] = token
            self.n_codes = n + 1
            self.token_list.extend([None] * (n - len(self.token_list)))
            self.token_list.append(token)
        return c

    def token_json(self) -> list[bytes | None]:
        """``token_list`` with each token as its JSON string bytes (orjson's escaping), for
        the kernel's JSON writer; extended here for the tokens added since the last call."""
        tj, tl = self._token_json, self.token_list
        if len(tj) < len(tl):
            tj.extend(None if t is None else orjson.dumps(t) for t in tl[len(tj) :])
        return tj

    def encode(self, tokens: list[str] | tuple[str, ...]) -> str:
        """Token sequence as a string; unknown tokens get codes no pattern uses."""
        codes = self.codes
        out = []
        extra: dict[str, str] = {}
        for t in tokens:
            c = codes.get(t)
            if c is None:
                c = extra.get(t)
                if c is None:
                    n = len(codes) + len(extra) + 0x100
                    if n >= 0xD800:
                        n += 0x800
                    c = extra[t] = chr(n)
            out.append(c)
        return "".join(out)

    def sync(self, kb: KnowledgeBase) -> None:
        """Append patterns learned since the last call (patterns are never removed)."""
        n = len(self.records)
        if len(kb.patterns) == n:
            return
        for rec in islice(kb.patterns.values(), n, None):
            i = len(self.records)
            self.records.append(rec)
            self.names.append(rec.name)
            self._lens.append(len(rec.flat))
            self._evlens.append([len(e) for e in rec.events])
            self.encoded.append("".join(self.code(t) for t in rec.flat))
            for s, c in Counter(rec.flat).items():
                post = self._post.get(s)
                if post is None:
                    post = self._post[s] = ([], [])
                post[0].append(i)
                post[1].append(c)
                self._arrays.pop(s, None)
        self.lens = np.asarray(self._lens, dtype=np.int64)

    def coded(
        self,
    ) -> tuple[
        npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int64]
    ]:
        """Flat token codes, pattern offsets, event lengths, event offsets (all patterns).

        Appended incrementally with amortised doubling, so a learn between two predictions
        costs only the new patterns.
        """
        n0, n1 = self._n_coded, len(self.records)
        if n1 > n0:
            new = np.frombuffer("".join(self.encoded[n0:n1]).encode("utf-32-le"), dtype=np.uint32)
            evl = [x for ls in self._evlens[n0:n1] for x in ls]
            nf, ne = int(self._offs[n0]), int(self._evoffs[n0])
            self._flat = _grow(self._flat, nf + new.size)
            self._flat[nf : nf + new.size] = new
            self._evlen = _grow(self._evlen, ne + len(evl))
            self._evlen[ne : ne + len(evl)] = evl
            self._offs = _grow(self._offs, n1 + 1)
            self._offs[n0 + 1 : n1 + 1] = nf + np.cumsum(self._lens[n0:n1], dtype=np.int64)
            self._evoffs = _grow(self._evoffs, n1 + 1)
            self._evoffs[n0 + 1 : n1 + 1] = ne + np.cumsum(
                [len(ls) for ls in self._evlens[n0:n1]], dtype=np.int64
            )
            self._n_coded = n1
        nf, ne = int(self._offs[n1]), int(self._evoffs[n1])
        return self._flat[:nf], self._offs[: n1 + 1], self._evlen[:ne], self._evoffs[: n1 + 1]

    def postings(self, s: str) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int32]] | None:
        arr = self._arrays.get(s)
        if arr is None:
            post = self._post.get(s)
            if post is None:
                return None
            arr = (np.asarray(post[0], dtype=np.intp), np.asarray(post[1], dtype=np.int32))
            self._arrays[s] = arr
        return arr

    def minhash(self, rec: PatternRecord) -> tuple[npt.NDArray[np.uint64], frozenset[int]]:
        """The pattern's stored ``minhash_sig`` and ``lsh_bands`` (as a set), cached."""
        got = self._minhash.get(rec.name)
        if got is None:
            phv = self._phv
            for t in set(rec.flat):
                if t not in phv:
                    phv[t] = token_permuted_hashes(t.encode("utf-8", "surrogatepass"))
            sig = signature(phv[t] for t in set(rec.flat))
            got = (sig, frozenset(band_hashes(sig, STORED_BANDS, STORED_ROWS)))
            self._minhash[rec.name] = got
        return got

    def state_signature(self, tokens: Iterable[str]) -> npt.NDArray[np.uint64]:
        """MinHash signature (100 permutations) of the distinct ``tokens``.

        Tokens are UTF-8 encoded strictly, as KATO does: a lone surrogate raises
        ``UnicodeEncodeError`` (a ``ValueError``), which fails KATO's filter.
        """
        phv = self._phv
        return signature(
            phv[t] if t in phv else token_permuted_hashes(t.encode("utf-8")) for t in set(tokens)
        )

    def lcs_bounds(self, state: list[str]) -> npt.NDArray[np.int32]:
        """Per-pattern upper bound on LCS(pattern, state): shared symbol counts."""
        bound = np.zeros(len(self.records), dtype=np.int32)
        for s, cs in Counter(state).items():
            arr = self.postings(s)
            if arr is None:
                continue
            idx, cnt = arr
            bound[idx] += np.minimum(cnt, cs) if cs > 1 else 1
        return bound


# -- MinHash as datasketch 1.6 computes it (MinHash(num_perm, seed=1), sha1_hash32) -------

MINHASH_PERMS = 100
"""Signature length KATO stores per pattern (``minhash_sig``)."""
STORED_BANDS, STORED_ROWS = 20, 5
"""``lsh_bands`` as KATO stores them: 20 bands of 5 signature rows."""
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)


@cache
def _permutations() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """datasketch's ``(a, b)`` of the first 100 permutations for seed 1.

    datasketch draws the pairs one after the other from ``RandomState(seed)``, so the
    first ``k`` permutations of any ``num_perm >= k`` are these.
    """
    gen = np.random.RandomState(1)
    pairs = [
        (
            gen.randint(1, _MERSENNE, dtype=np.uint64),
            gen.randint(0, _MERSENNE, dtype=np.uint64),
        )
        for _ in range(MINHASH_PERMS)
    ]
    ab = np.array(pairs, dtype=np.uint64).T
    return ab[0], ab[1]


def token_permuted_hashes(data: bytes) -> npt.NDArray[np.uint64]:
    """``(a*h + b) % (2**61 - 1) & (2**32 - 1)`` for the token's SHA-1 32-bit hash ``h``.

    The products wrap modulo 2**64 in uint64, exactly as datasketch's numpy code does.
    """
    a, b = _permutations()
    h = np.uint64(int.from_bytes(hashlib.sha1(data).digest()[:4], "little"))
    out: npt.NDArray[np.uint64] = np.bitwise_and((a * h + b) % _MERSENNE, _MAX_HASH)
    return out


def signature(token_hashes: Iterable[npt.NDArray[np.uint64]]) -> npt.NDArray[np.uint64]:
    """Element-wise minimum (datasketch's ``update``); all ``2**32 - 1`` when empty."""
    sig = np.full(MINHASH_PERMS, _MAX_HASH, dtype=np.uint64)
    for phv in token_hashes:
        np.minimum(sig, phv, out=sig)
    return sig


def band_hashes(sig: npt.NDArray[np.uint64], bands: int, rows: int) -> list[int]:
    """KATO's LSH band values: ``abs(hash(tuple(sig[i*rows:(i+1)*rows])))`` per band.

    Only bands that lie inside the 100 computed rows are returned: a band reaching past
    them (``minhash_num_hashes`` > 100) has no stored band of the same permutations to
    equal, so it could only match by a 64-bit hash collision.
    """
    out = []
    for i in range(bands):
        lo, hi = i * rows, (i + 1) * rows
        if hi > sig.size:
            break
        out.append(abs(hash(tuple(int(v) for v in sig[lo:hi]))))
    return out


def _grow(arr: _A, size: int) -> _A:
    """``arr`` with room for ``size`` items (same dtype, contents kept, capacity doubled)."""
    if arr.size >= size:
        return arr
    out = np.zeros(max(size, 2 * arr.size, 64), dtype=arr.dtype)
    out[: arr.size] = arr
    return out


def pattern_index(kb: KnowledgeBase) -> PatternIndex:
    """The KB's index, built on first use and kept in step with appended patterns."""
    idx = kb.caches.pattern_index
    if idx is None or idx.patterns_ref is not kb.patterns:
        idx = kb.caches.pattern_index = PatternIndex(kb)
    else:
        idx.sync(kb)
    return idx


def candidate_indices(
    kb: KnowledgeBase, state: list[str], threshold: float
) -> Iterator[PatternRecord]:
    """Patterns that can still reach ``threshold`` (all patterns when it is <= 0)."""
    if threshold <= 0.0:
        yield from kb.patterns.values()
        return
    idx = pattern_index(kb)
    if not idx.records:
        return
    bound = idx.lcs_bounds(state)
    total = idx.lens + len(state)
    ok = np.flatnonzero((2.0 * bound) / total >= threshold - _MARGIN)
    recs = idx.records
    for i in ok.tolist():
        yield recs[i]
