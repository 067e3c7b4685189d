"""Engine-core benchmark: prediction latency per path and learn rate (KATO's workload shape).

Workload (seed 42): 200-token vocabulary with Zipf weights 1/(i+1)^0.8; patterns of 2-5
events x 3-15 sorted unique tokens; multi-symbol queries are the 2-5 leading events of a
stored pattern keeping 30-70% of each event's tokens plus 0-3 noise tokens; single-symbol
queries are the first token of a stored pattern.  Default prediction parameters.

    python benchmarks/bench_core.py --sizes 1000,10000,100000 --queries 200 \
        --pure-python 1000,10000 --out benchmarks/results/core.json

``--pure-python SIZES`` also times the same queries with the C kernel disabled (the
pure-Python fallback, ``KATO_STREAM_PURE_PYTHON=1``) at those sizes, in the same run, and
checks that both paths return byte-identical predictions.

``--baseline REV`` also times the engine core of git revision REV (``git archive``, read
only; its C kernel compiled into a temporary directory), query by query interleaved with
the working tree's, on its own knowledge base built from the same learns, and checks that
both return byte-identical predictions: a before/after comparison that the noise of a
shared host affects equally (read the ratio).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kato_stream.core import kernel  # noqa: E402
from kato_stream.core.knowledge import KnowledgeBase, LearnEvent  # noqa: E402
from kato_stream.core.predictions import MatcherOptions, PredictParams, predict  # noqa: E402

VOCAB = [f"t{i:03d}" for i in range(200)]
WEIGHTS = [1.0 / (i + 1) ** 0.8 for i in range(200)]


def sample_unique(rng: random.Random, k: int) -> list[str]:
    out: set[str] = set()
    while len(out) < k:
        out.update(rng.choices(VOCAB, WEIGHTS, k=k - len(out)))
    return sorted(out)


def make_patterns(rng: random.Random, n: int) -> list[list[list[str]]]:
    return [
        [sample_unique(rng, rng.randint(3, 15)) for _ in range(rng.randint(2, 5))] for _ in range(n)
    ]


def make_query(rng: random.Random, pattern: list[list[str]]) -> list[list[str]]:
    n_ev = min(len(pattern), rng.randint(2, 5))
    stm = []
    for ev in pattern[:n_ev]:
        keep = max(1, round(len(ev) * rng.uniform(0.3, 0.7)))
        toks = rng.sample(ev, keep) + rng.choices(VOCAB, WEIGHTS, k=rng.randint(0, 3))
        stm.append(sorted(toks))
    return stm


class GcClock:
    """CPU time spent in the cyclic garbage collector (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            self.total += time.process_time() - self._start


GC_CLOCK = GcClock()
gc.callbacks.append(GC_CLOCK)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def load_baseline(rev: str, workdir: Path) -> tuple[ModuleType, ModuleType]:
    """(knowledge, predictions) modules of ``kato_stream/core`` at git revision ``rev``."""
    import importlib
    import importlib.util

    from benchmarks._common import export_revision

    core = export_revision(rev, workdir, "kato_stream/core")
    spec = importlib.util.spec_from_file_location(
        "kato_baseline_core", core / "__init__.py", submodule_search_locations=[str(core)]
    )
    assert spec is not None and spec.loader is not None
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["kato_baseline_core"] = pkg
    spec.loader.exec_module(pkg)
    base_kernel = importlib.import_module("kato_baseline_core.kernel")
    if not base_kernel.enabled():
        raise RuntimeError(f"baseline {rev}: C kernel not available")
    return (
        importlib.import_module("kato_baseline_core.knowledge"),
        importlib.import_module("kato_baseline_core.predictions"),
    )


def bench(
    size: int,
    n_queries: int,
    pure: bool,
    seed: int = 42,
    baseline: tuple[ModuleType, ModuleType] | None = None,
) -> dict[str, Any]:
    rng = random.Random(seed)
    patterns = make_patterns(rng, size)
    events = [
        LearnEvent(
            node_id="bench",
            learn_id=f"l{i}",
            name=hashlib.sha1(str(p).encode()).hexdigest(),
            events=tuple(tuple(e) for e in p),
        )
        for i, p in enumerate(patterns)
    ]
    kb = KnowledgeBase("bench")
    t0 = time.perf_counter()
    for ev in events:
        kb.apply_learn(ev)
    learn_s = time.perf_counter() - t0

    params = PredictParams()
    multi = [make_query(rng, rng.choice(patterns)) for _ in range(n_queries)]
    single = [[[rng.choice(patterns)[0][0]]] for _ in range(n_queries)]
    t0 = time.perf_counter()
    predict(kb, multi[0], params)  # first call builds the derived index
    index_build_s = time.perf_counter() - t0

    def run(
        queries: list[list[list[str]]], options: MatcherOptions
    ) -> tuple[list[float], list[float], list[float], float, list[bytes]]:
        lat = []
        lat_nogc = []
        wall = []
        n_preds = 0
        dumps = []
        for q in queries:
            # CPU time of this process: the shared 2-core host is often loaded by others.
            g = GC_CLOCK.total
            t = time.process_time()
            w = time.perf_counter()
            res = predict(kb, q, params, options)
            wall.append((time.perf_counter() - w) * 1000.0)
            lat.append((time.process_time() - t) * 1000.0)
            lat_nogc.append(lat[-1] - (GC_CLOCK.total - g) * 1000.0)
            n_preds += len(res.predictions)
            dumps.append(hashlib.sha1(json.dumps(res.predictions).encode()).digest())
        return lat, lat_nogc, wall, n_preds / len(queries), dumps

    def summary(
        lat: list[float], lat_nogc: list[float], wall: list[float], avg: float
    ) -> dict[str, float]:
        return {
            "p50_ms": round(statistics.median(lat), 3),
            "p99_ms": round(pct(lat, 0.99), 3),
            "mean_ms": round(statistics.fmean(lat), 3),
            "p99_excl_gc_ms": round(pct(lat_nogc, 0.99), 3),
            "wall_p50_ms": round(statistics.median(wall), 3),
            "avg_predictions": round(avg, 1),
        }

    def paths(options: MatcherOptions) -> tuple[dict[str, Any], list[bytes]]:
        lat_m, ng_m, wall_m, avg_m, d_m = run(multi, options)
        lat_s, ng_s, wall_s, avg_s, d_s = run(single, options)
        return {
            "multi": summary(lat_m, ng_m, wall_m, avg_m),
            "single": summary(lat_s, ng_s, wall_s, avg_s),
        }, d_m + d_s

    out: dict[str, Any] = {
        "patterns": size,
        "queries": {"multi": len(multi), "single": len(single)},
        "learn_patterns_per_s": round(size / learn_s, 1),
        "first_predict_ms_incl_index_build": round(index_build_s * 1000, 2),
    }
    if baseline is not None:
        # Interleaved query by query with the baseline revision (same CPU-time noise).
        b_know, b_pred = baseline
        b_kb = b_know.KnowledgeBase("bench")
        for ev in events:
            b_kb.apply_learn(b_know.LearnEvent(**ev.to_dict()))
        b_params = b_pred.PredictParams()
        b_pred.predict(b_kb, multi[0], b_params)
        cmp: dict[str, Any] = {}
        same = True
        for kind, queries in (("multi", multi), ("single", single)):
            lat_new: list[float] = []
            lat_old: list[float] = []
            ng_new: list[float] = []
            ng_old: list[float] = []
            for k, q in enumerate(queries):
                order = (0, 1) if k % 2 == 0 else (1, 0)
                got: list[bytes] = [b"", b""]
                for which in order:
                    fn, k_b, p_b = (
                        (predict, kb, params) if which == 0 else (b_pred.predict, b_kb, b_params)
                    )
                    g = GC_CLOCK.total
                    t = time.process_time()
                    r = fn(k_b, q, p_b)
                    dt = (time.process_time() - t) * 1000.0
                    (lat_new if which == 0 else lat_old).append(dt)
                    (ng_new if which == 0 else ng_old).append(dt - (GC_CLOCK.total - g) * 1000.0)
                    got[which] = json.dumps([r.predictions, r.future_potentials]).encode()
                same = same and got[0] == got[1]
            p50_new, p50_old = statistics.median(lat_new), statistics.median(lat_old)
            cmp[kind] = {
                "p50_ms": round(p50_new, 3),
                "p99_ms": round(pct(lat_new, 0.99), 3),
                "mean_ms": round(statistics.fmean(lat_new), 3),
                "p99_excl_gc_ms": round(pct(ng_new, 0.99), 3),
                "baseline_p50_ms": round(p50_old, 3),
                "baseline_p99_ms": round(pct(lat_old, 0.99), 3),
                "baseline_mean_ms": round(statistics.fmean(lat_old), 3),
                "baseline_p99_excl_gc_ms": round(pct(ng_old, 0.99), 3),
                "speedup_p50": round(p50_old / p50_new, 2) if p50_new > 0 else None,
            }
        cmp["identical_predictions"] = same
        out["vs_baseline"] = cmp
        del b_kb
    res, dumps = paths(MatcherOptions())
    out.update(res)
    if pure:
        res_p, dumps_p = paths(MatcherOptions(c_kernel=False))
        out["pure_python"] = res_p
        out["pure_python"]["identical_predictions"] = dumps_p == dumps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default="")
    ap.add_argument(
        "--pure-python",
        default="",
        help="comma-separated sizes at which to also time the pure-Python fallback",
    )
    ap.add_argument(
        "--baseline",
        default="",
        help="git revision whose engine core is timed interleaved with the working tree",
    )
    ap.add_argument(
        "--big-queries",
        type=int,
        default=0,
        help="queries at sizes >= 100,000 (default: --queries / 10, at least 5)",
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pure = {int(s) for s in args.pure_python.split(",") if s}
    load_before = os.getloadavg()
    big = args.big_queries or max(5, args.queries // 10)
    with tempfile.TemporaryDirectory(prefix="kato-baseline-") as tmp:
        baseline = load_baseline(args.baseline, Path(tmp)) if args.baseline else None
        # Fewer queries at 100k: the full path is ~linear in passing candidates.
        results = [
            bench(n, args.queries if n < 100_000 else big, n in pure, baseline=baseline)
            for n in sizes
        ]
    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 1) for x in load_before],
            "loadavg_after": [round(x, 1) for x in os.getloadavg()],
            "c_kernel": kernel.enabled(),
            "baseline": args.baseline or None,
            "note": "single process, one core; latencies are CPU time (time.process_time)"
            " unless named wall_*; *_excl_gc_ms subtract the cyclic GC's CPU time (gc.callbacks)",
        },
        "params": "defaults: recall_threshold 0.1, max_predictions 100, token matching",
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
