"""Tuning benchmark: what RECALL_THRESHOLD, MAX_PREDICTIONS and the prediction cache buy.

Same workload as ``bench_core.py`` (seed 42, Zipf vocabulary, multi-symbol queries built
from stored patterns).  Engine latencies are CPU time of this process (the shared host is
noisy); cache latencies are wall time, since they are Redis round trips.

    python benchmarks/bench_tuning.py --sizes 1000,10000 --queries 200 \
        --redis-url redis://127.0.0.1:6379/15 --out benchmarks/results/tuning.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_core import make_patterns, make_query, pct  # noqa: E402
from kato_stream.core.knowledge import KnowledgeBase, LearnEvent  # noqa: E402
from kato_stream.core.predictions import PredictParams, predict  # noqa: E402

THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
MAX_PREDICTIONS = (5, 20, 100, 500)


def build(size: int, seed: int) -> tuple[KnowledgeBase, list[list[list[str]]], random.Random]:
    rng = random.Random(seed)
    patterns = make_patterns(rng, size)
    kb = KnowledgeBase("bench")
    for i, p in enumerate(patterns):
        kb.apply_learn(
            LearnEvent(
                "bench",
                f"l{i}",
                hashlib.sha1(str(p).encode()).hexdigest(),
                tuple(tuple(e) for e in p),
            )
        )
    return kb, patterns, rng


def stats(lat: list[float], n_preds: int, n: int) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(lat), 3),
        "p99_ms": round(pct(lat, 0.99), 3),
        "avg_predictions": round(n_preds / n, 1),
    }


def run(
    kb: KnowledgeBase, queries: list[list[list[str]]], params: PredictParams
) -> dict[str, float]:
    lat, n_preds = [], 0
    for q in queries:
        t = time.process_time()
        res = predict(kb, q, params)
        lat.append((time.process_time() - t) * 1000.0)
        n_preds += len(res.predictions)
    return stats(lat, n_preds, len(queries))


def cache_run(kb: KnowledgeBase, queries: list[list[list[str]]], url: str) -> dict[str, Any]:
    from kato_stream.stores.prediction_cache import PredictionCache

    cache = PredictionCache(url, ttl=120, timeout=1.0)
    asyncio.run(cache.start())  # a blocking client: no event loop needed after
    # a fresh fingerprint per run, so the first pass always misses
    kb.fingerprint = hashlib.sha1(f"{time.time_ns()}".encode()).hexdigest()
    out: dict[str, Any] = {}
    try:
        for label in ("miss", "hit"):
            lat = []
            for q in queries:
                t = time.perf_counter()
                cache(kb, q, PredictParams())
                lat.append((time.perf_counter() - t) * 1000.0)
            out[label] = {
                "p50_ms": round(statistics.median(lat), 3),
                "p99_ms": round(pct(lat, 0.99), 3),
            }
        out["hits"], out["misses"], out["errors"] = cache.hits, cache.misses, cache.errors
    finally:
        asyncio.run(cache.stop())
    return out


def bench(size: int, n_queries: int, redis_url: str, seed: int = 42) -> dict[str, Any]:
    kb, patterns, rng = build(size, seed)
    queries = [make_query(rng, rng.choice(patterns)) for _ in range(n_queries)]
    predict(kb, queries[0], PredictParams())  # build the derived index outside the timings
    result: dict[str, Any] = {
        "patterns": size,
        "recall_threshold": {
            str(t): run(kb, queries, PredictParams(recall_threshold=t)) for t in THRESHOLDS
        },
        "max_predictions": {
            str(m): run(kb, queries, PredictParams(max_predictions=m)) for m in MAX_PREDICTIONS
        },
    }
    if redis_url:
        result["cache"] = cache_run(kb, queries, redis_url)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--redis-url", default="", help="measure the prediction cache against this Redis"
    )
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "one process; engine latencies are CPU time, cache latencies wall time",
        },
        "results": [bench(int(n), args.queries, args.redis_url) for n in args.sizes.split(",")],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
