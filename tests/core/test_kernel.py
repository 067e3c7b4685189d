"""Exactness of the C kernel (``_kernel.c`` via ``kernel.py``) against the pure-Python path.

* blocks: the kernel's matching blocks equal ``difflib`` (no junk, no autojunk) and
  ``matcher.matching_blocks`` on random sequences with many repeats;
* per-candidate inputs of ``pre_potential`` (M, E, number of blocks, present length)
  equal what ``predictor.matching.build_candidate`` computes;
* ``predict()`` with the kernel is byte-identical (orjson) to the pure-Python path (each
  chosen per call: ``MatcherOptions(c_kernel=True/False)``);
* the kernel is built: its tests fail, not skip, when it is missing, unless
  ``KATO_STREAM_PURE_PYTHON=1`` says the pure-Python matcher is wanted (a compile error must
  fail CI, as ``.ci/run``'s wheel check does);
* a worker without the kernel refuses to start unless ``KATO_STREAM_PURE_PYTHON=1``, and then
  starts, logs a warning and reports ``kato_kernel_enabled 0`` on its ``/metrics``.  The
  worker subprocess loses the kernel the way a build without a compiler does: the module
  ``kato_stream.core._kernel`` cannot be imported (``sys.modules[...] = None`` before any
  import, so ``from . import _kernel`` raises ``ImportError``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from kato_stream import metrics
from kato_stream.core import kernel
from kato_stream.core.knowledge import KnowledgeBase, LearnEvent, Precomputed
from kato_stream.core.matcher import diff_missing_extras, matching_blocks
from kato_stream.core.predictions import MatcherOptions, PredictionResult, PredictParams, predict
from kato_stream.core.predictor.candidates import passing
from kato_stream.core.predictor.matching import build_candidate, pre_potential
from kato_stream.core.prefilter import pattern_index
from kato_stream.settings import Settings
from kato_stream.stream import codecs

#: The pure-Python matcher is wanted: a missing kernel skips its tests instead of failing them.
PURE_PYTHON_WANTED = os.environ.get(kernel.PURE_PYTHON_ENV, "").strip().lower() in (
    "1",
    "true",
    "yes",
    "on",
)
NOT_BUILT = (
    f"the C kernel kato_stream/core/_kernel.c is not built or does not import "
    f"({kernel.IMPORT_ERROR}); rebuild it (pip install -e .) or set "
    f"{kernel.PURE_PYTHON_ENV}=1 to test the pure-Python matcher only"
)


@pytest.fixture(scope="module")
def kernel_built() -> None:
    """Fail (never skip silently) the kernel's tests when it is missing, unless the
    pure-Python matcher is explicitly wanted."""
    if kernel.AVAILABLE:
        return
    if PURE_PYTHON_WANTED:
        pytest.skip(f"C kernel not built ({kernel.PURE_PYTHON_ENV}=1)")
    pytest.fail(NOT_BUILT)


needs_kernel = pytest.mark.usefixtures("kernel_built")

#: ``python -c HIDE_KERNEL <cli args>``: the CLI in a process where the kernel cannot import.
HIDE_KERNEL = (
    "import sys; sys.modules['kato_stream.core._kernel'] = None; "
    "from kato_stream.cli import main; sys.exit(main(sys.argv[1:]))"
)
ROOT = Path(__file__).resolve().parents[2]


def learn(kb: KnowledgeBase, events: Sequence[Sequence[str]]) -> None:
    ev = tuple(tuple(e) for e in events)
    name = hashlib.sha1(repr(ev).encode()).hexdigest()
    kb.apply_learn(LearnEvent("n", f"l{len(kb.applied)}", name, ev))


def dump(res: PredictionResult) -> bytes:
    return orjson.dumps([res.predictions, res.future_potentials, res.fast_path])


def both_paths(
    kb: KnowledgeBase, stm: list[list[str]], params: PredictParams
) -> tuple[bytes, bytes]:
    """(kernel, pure Python) bytes; also checks the kernel's own JSON (``encoded``) against
    the bytes the stream layer writes for the kernel's dicts."""
    res = predict(kb, stm, params, MatcherOptions(c_kernel=True))
    enc = predict(kb, stm, params, MatcherOptions(c_kernel=True, encoded=True))
    assert codecs.dumps(enc.predictions) == codecs.dumps(res.predictions)
    assert codecs.dumps(enc.future_potentials) == codecs.dumps(res.future_potentials)
    assert enc.future_potentials == res.future_potentials
    fast = dump(res)
    slow = dump(predict(kb, stm, params, MatcherOptions(c_kernel=False)))
    return fast, slow


def test_matcher_options_choose_the_path() -> None:
    assert MatcherOptions().runs_kernel() is kernel.enabled()
    assert MatcherOptions(c_kernel=True).runs_kernel() is kernel.AVAILABLE
    assert MatcherOptions(c_kernel=False).runs_kernel() is False
    assert MatcherOptions(c_kernel=True, exhaustive=True).runs_kernel() is False


# --- blocks ------------------------------------------------------------------------------

ints = st.lists(st.integers(min_value=0, max_value=5), max_size=30)


@needs_kernel
@settings(max_examples=3000, deadline=None)
@given(a=ints, b=ints)
def test_blocks_equal_difflib(a: list[int], b: list[int]) -> None:
    got = kernel.blocks(a, b)
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    assert got == [tuple(x) for x in sm.get_matching_blocks()]
    assert got == matching_blocks(a, b)


@needs_kernel
def test_blocks_long_sequences_with_repeats() -> None:
    rng = random.Random(3)
    for _ in range(300):
        k = rng.randint(1, 8)
        a = [rng.randint(0, k) for _ in range(rng.randint(0, 300))]
        b = [rng.randint(0, k) for _ in range(rng.randint(0, 120))]
        sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
        assert kernel.blocks(a, b) == [tuple(x) for x in sm.get_matching_blocks()]


# --- per-candidate pre-potential inputs -----------------------------------------------------

VOCAB = [f"s{i}" for i in range(8)]
event = st.lists(st.sampled_from(VOCAB), min_size=0, max_size=5)
pattern = st.lists(event, min_size=1, max_size=5).filter(lambda es: sum(map(len, es)) >= 1)
state_tok = st.sampled_from([*VOCAB, "unknown1", "unknown2"])


@needs_kernel
@settings(max_examples=400, deadline=None)
@given(
    patterns=st.lists(pattern, min_size=1, max_size=12),
    state=st.lists(state_tok, min_size=1, max_size=14),
)
def test_prepot_inputs_match_python(patterns: list[list[list[str]]], state: list[str]) -> None:
    kb = KnowledgeBase("n")
    for p in patterns:
        learn(kb, p)
    idx = pattern_index(kb)
    sel = np.arange(len(idx.records), dtype=np.int64)
    q = kernel.state_codes(idx, state)
    m, e, nb, plen = kernel.prepot_inputs(idx, sel, q)
    bl = kernel.blocks_batch(idx, sel.tolist(), q)
    stm = [state]
    for k, rec in enumerate(idx.records):
        blocks = matching_blocks(rec.flat, state)[:-1]
        assert bl[k] == blocks
        assert int(nb[k]) == len(blocks)
        assert int(m[k]) == sum(n for _i, _j, n in blocks)
        if blocks:
            i0, end = blocks[0][0], blocks[-1][0] + blocks[-1][2]
            present_flat = rec.flat[i0:end]
        else:
            present_flat = rec.flat
        _missing, extras = diff_missing_extras(present_flat, state)
        assert int(e[k]) == len(extras)
        c = build_candidate(rec, 0.5, state, stm, 0.0, 0.0)
        assert c is not None
        assert int(plen[k]) == len(c.present_flat)
        pre = kernel.pre_potentials(
            m[k : k + 1], e[k : k + 1], nb[k : k + 1], plen[k : k + 1], idx.lens[k : k + 1]
        )
        assert float(pre[0]) == pre_potential(c)


# --- whole predictions ------------------------------------------------------------------------

stm_event = st.lists(state_tok, min_size=1, max_size=4).map(sorted)


@needs_kernel
@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(pattern, min_size=1, max_size=30),
    stm=st.lists(stm_event, min_size=1, max_size=4),
    thr=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3333333333333333, 0.5, 0.6666666666666665, 1.0]),
    maxp=st.sampled_from([1, 2, 3, 100]),
)
def test_predict_kernel_equals_pure_python(
    patterns: list[list[list[str]]],
    stm: list[list[str]],
    thr: float,
    maxp: int,
) -> None:
    kb = KnowledgeBase("n")
    for p in patterns:
        learn(kb, p)
    params = PredictParams(recall_threshold=thr, max_predictions=maxp)
    fast, slow = both_paths(kb, stm, params)
    assert fast == slow


@needs_kernel
def test_predict_kernel_equals_pure_python_bench_shape() -> None:
    """Larger KBs of the benchmark's shape, many candidates pruned, incremental learns."""
    rng = random.Random(11)
    voc = [f"t{i:03d}" for i in range(60)]
    w = [1.0 / (i + 1) ** 0.8 for i in range(60)]
    kb = KnowledgeBase("n")
    for round_ in range(3):
        for _ in range(400):
            learn(
                kb,
                [
                    sorted(set(rng.choices(voc, w, k=rng.randint(2, 9))))
                    for _ in range(rng.randint(1, 5))
                ],
            )
        for _ in range(15):
            stm = [
                sorted(rng.choices(voc, w, k=rng.randint(1, 6))) for _ in range(rng.randint(1, 4))
            ]
            for maxp in (5, 40):
                params = PredictParams(max_predictions=maxp, recall_threshold=0.1 * round_)
                fast, slow = both_paths(kb, stm, params)
                assert fast == slow


def test_fast_path_ranking_cache_follows_learns() -> None:
    kb = KnowledgeBase("n")
    rng = random.Random(5)
    voc = [f"v{i}" for i in range(6)]
    params = PredictParams(max_predictions=2)
    used = 0
    for _ in range(5):
        for _ in range(20):
            learn(kb, [sorted(rng.sample(voc, rng.randint(1, 4))) for _ in range(2)])
        for s in voc:
            cached = predict(kb, [[s]], params)
            used += kb.caches.first_token is not None
            kb.caches.first_token = None
            fresh = predict(kb, [[s]], params)
            assert dump(cached) == dump(fresh)
    assert used > 0
    kb.clear("c1")
    assert predict(kb, [["v1"]], params).predictions == []


def test_kernel_is_built() -> None:
    if not kernel.AVAILABLE and PURE_PYTHON_WANTED:
        pytest.skip(f"C kernel not built ({kernel.PURE_PYTHON_ENV}=1)")
    assert kernel.AVAILABLE, NOT_BUILT
    assert kernel.IMPORT_ERROR == ""
    assert Path(kernel._ext.__file__).name.startswith("_kernel")


def test_pure_python_env_switch() -> None:
    code = "from kato_stream.core import kernel; print(kernel.ENABLED, kernel.enabled())"
    env = dict(os.environ, KATO_STREAM_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


# --- one-pass scan (exact LCS + threshold + prepot inputs) ------------------------------------


@needs_kernel
@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(
        st.lists(st.sampled_from(VOCAB), min_size=1, max_size=90), min_size=1, max_size=8
    ),
    state=st.lists(state_tok, min_size=1, max_size=150),
    thr=st.sampled_from([0.0, 0.1, 0.3333333333333333, 0.6666666666666665]),
)
def test_scan_equals_cdist_and_prepot(
    patterns: list[list[str]], state: list[str], thr: float
) -> None:
    """States longer than 64 and 128 tokens exercise the multi-word bit-parallel LCS."""
    kb = KnowledgeBase("n")
    for p in patterns:
        learn(kb, [p])
    idx = pattern_index(kb)
    q = kernel.state_codes(idx, state)
    sel, sims, m, e, nb, plen = kernel.scan(idx, q, thr)
    want_sel, _lcs, _lens, want_sims = passing(idx, state, thr)
    assert sel.tolist() == want_sel.tolist()
    assert sims.tobytes() == want_sims.tobytes()
    m2, e2, nb2, plen2 = kernel.prepot_inputs(idx, sel, q)
    assert (m.tolist(), e.tolist(), nb.tolist(), plen.tolist()) == (
        m2.tolist(),
        e2.tolist(),
        nb2.tolist(),
        plen2.tolist(),
    )


def finalize(kb: KnowledgeBase, every: int) -> None:
    """finalize-training's metrics (as ``Engine._finalize``) on every ``every``-th pattern."""
    s_count, u = kb.distinct_symbols, kb.total_unique_patterns
    ln_s = math.log(s_count) if s_count > 1 else 0.0
    for k, name in enumerate(sorted(kb.patterns)):
        if k % every:
            continue
        rec = kb.patterns[name]
        ent = norm = gnorm = 0.0
        tf: dict[str, float] = {}
        for sym, c in Counter(rec.flat).items():
            p = c / rec.length
            ent -= p * math.log2(p)
            if s_count > 1:
                norm += -p * math.log(p) / ln_s
                big_p = kb.pmf.get(sym, 0) / u if u else 0.0
                if big_p > 0:
                    gnorm += -big_p * math.log(big_p) / ln_s
            tf[sym] = c / rec.length
        kb.set_precomputed(name, Precomputed(ent, norm, gnorm, tf))


@needs_kernel
@settings(max_examples=200, deadline=None)
@given(
    patterns=st.lists(pattern, min_size=1, max_size=30),
    relearn=st.lists(st.integers(min_value=0, max_value=29), max_size=10),
    stm=st.lists(st.lists(state_tok, min_size=1, max_size=30), min_size=1, max_size=4),
    thr=st.sampled_from([0.0, 0.1, 0.3]),
    maxp=st.sampled_from([1, 3, 100]),
    algo=st.sampled_from(
        [
            "potential",
            "confluence",
            "tfidf_score",
            "predictive_information",
            "entropy",
            "global_normalized_entropy",
            "itfdf_similarity",
            "bayesian_posterior",
            "frequency",
            "weighted_snr",
            "fragmentation",
        ]
    ),
    every=st.sampled_from([0, 1, 2]),
)
def test_predict_kernel_equals_pure_python_ensemble(
    patterns: list[list[list[str]]],
    relearn: list[int],
    stm: list[list[str]],
    thr: float,
    maxp: int,
    algo: str,
    every: int,
) -> None:
    """Re-learned patterns (frequency > 1), finalize-training metrics, every ranking key and
    states longer than 64 tokens: the end-to-end kernel path equals the generic path."""
    kb = KnowledgeBase("n")
    for p in patterns:
        learn(kb, p)
    for r in relearn:
        if r < len(patterns):
            ev = tuple(tuple(e) for e in patterns[r])
            name = hashlib.sha1(repr(ev).encode()).hexdigest()
            kb.apply_learn(LearnEvent("n", f"r{len(kb.applied)}", name, ev))
    if every:
        finalize(kb, every)
    params = PredictParams(recall_threshold=thr, max_predictions=maxp, rank_sort_algo=algo)
    fast, slow = both_paths(kb, stm, params)
    assert fast == slow


# --- the kernel at a process's start: log, gauge, refusal ---------------------------------


def _gauge(body: str) -> float | None:
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "kato_kernel_enabled":
                return float(sample.value)
    return None


def _check_status(on: bool, role: str, body: str, record: logging.LogRecord) -> None:
    """The gauge, the start-up log line and the refusal say which matcher runs (``on``)."""
    assert _gauge(body) == float(on)
    assert record.levelno == (logging.INFO if on else logging.WARNING)
    assert role in record.getMessage()
    assert ("C kernel enabled" if on else "pure-Python matcher") in record.getMessage()


def test_gauge_and_log_follow_the_matcher(caplog: pytest.LogCaptureFixture) -> None:
    """This process: the matcher it runs (the kernel is chosen once per process)."""
    caplog.set_level(logging.INFO, logger=kernel.__name__)
    on = kernel.enabled()
    assert kernel.log_status("worker") is on
    _check_status(on, "worker", metrics.render()[0].decode(), caplog.records[-1])
    kernel.require(True)  # allowed: never a refusal
    if on:
        kernel.require(False)
    else:
        with pytest.raises(kernel.KernelUnavailable, match="KATO_STREAM_PURE_PYTHON=1"):
            kernel.require(False)


#: A process whose environment asks for the pure-Python matcher: gauge, log, refusal.
PURE_STATUS = """
import json, logging
from kato_stream import metrics
from kato_stream.core import kernel
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)
logging.getLogger(kernel.__name__).addHandler(Keep())
logging.getLogger(kernel.__name__).setLevel(logging.INFO)
on = kernel.log_status("gateway")
try:
    kernel.require(False)
    refused = ""
except kernel.KernelUnavailable as exc:
    refused = str(exc)
r = records[-1]
print(json.dumps({"on": on, "enabled": kernel.enabled(), "body": metrics.render()[0].decode(),
                  "level": r.levelno, "msg": r.getMessage(), "refused": refused}))
"""


def test_gauge_and_log_without_the_kernel() -> None:
    env = dict(os.environ, KATO_STREAM_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", PURE_STATUS],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    got = json.loads(out.stdout)
    assert got["on"] is False and got["enabled"] is False
    record = logging.makeLogRecord({"levelno": got["level"], "msg": got["msg"]})
    _check_status(False, "gateway", got["body"], record)
    assert "KATO_STREAM_PURE_PYTHON=1" in got["refused"]


def _worker_env(s: Settings) -> dict[str, str]:
    return {**os.environ, **s.to_env(), "PYTHONPATH": str(ROOT)}


def test_worker_without_kernel_refuses_to_start(tmp_path: Path) -> None:
    """Before it connects to anything: the broker address here is closed."""
    s = Settings(
        kafka_bootstrap="127.0.0.1:1", data_dir=str(tmp_path), web_port=16066, pure_python=False
    )
    out = subprocess.run(
        [sys.executable, "-c", HIDE_KERNEL, "worker"],
        env=_worker_env(s),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr
    assert "refusing to start" in out.stderr
    assert "C kernel" in out.stderr and "KATO_STREAM_PURE_PYTHON=1" in out.stderr
    assert "Traceback" not in out.stderr  # the message alone
    assert "Unable connect" not in out.stderr


@pytest.mark.stack
@pytest.mark.timeout(180)
def test_worker_without_kernel_starts_with_pure_python_allowed(
    stack_settings: Settings, tmp_path: Path
) -> None:
    from tests.stream.harness import WorkerProc, setup_topics

    s = dataclasses.replace(
        stack_settings,
        partitions=2,
        data_dir=str(tmp_path / "worker"),
        persist=False,
        pure_python=True,
    )
    asyncio.run(setup_topics(s))
    w = WorkerProc(
        s, tmp_path / "worker.log", ["-c", HIDE_KERNEL, "worker", "--loglevel", "info"]
    ).start()
    try:
        gauge = None
        deadline = time.monotonic() + 90
        while gauge is None and time.monotonic() < deadline:
            assert w.alive(), w.log_tail()
            try:
                r = httpx.get(f"http://127.0.0.1:{s.web_port}/metrics", timeout=5)
                if r.status_code == 200:
                    gauge = _gauge(r.text)
            except httpx.HTTPError:
                pass
            if gauge is None:
                time.sleep(0.5)
        assert gauge == 0.0, w.log_tail()
        log = w.log_tail(10**6)
        assert "[WARNING] kato-stream worker: C kernel not available" in log, log
        assert "pure-Python matcher" in log
        assert "refusing" not in log
    finally:
        w.stop()
