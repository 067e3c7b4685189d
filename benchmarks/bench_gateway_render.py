"""The gateway's encoding of one predictions answer: Starlette's JSONResponse (stdlib json)
against BulkJSONResponse (orjson), on real predictions at KATO's defaults.

    .venv/bin/python benchmarks/bench_gateway_render.py --patterns 1000 --rounds 200 \\
        --out benchmarks/results/gateway_render.json

The predictions come from the engine core on bench_core's workload (seed 42): a query of
2-5 leading events of a stored pattern, 100 predictions, as the worker answers a predict.
Both encoders render the same answers interleaved, CPU time (``time.process_time``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import git_state  # noqa: E402
from bench_core import make_patterns, make_query  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from kato_stream.core.knowledge import KnowledgeBase, LearnEvent  # noqa: E402
from kato_stream.core.predictions import PredictParams, predict  # noqa: E402
from kato_stream.gateway.responses import BulkJSONResponse  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--patterns", type=int, default=1000)
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rng = random.Random(42)
    patterns = make_patterns(rng, args.patterns)
    kb = KnowledgeBase("bench")
    for i, pat in enumerate(patterns):
        name = hashlib.sha1(str(pat).encode()).hexdigest()
        kb.apply_learn(
            LearnEvent(
                node_id="bench", learn_id=f"l{i}", name=name, events=tuple(tuple(e) for e in pat)
            )
        )
    params = PredictParams()
    queries = [make_query(rng, rng.choice(patterns)) for _ in range(args.queries)]
    answers = [
        {"predictions": list(predict(kb, q, params).predictions), "status": "ok"} for q in queries
    ]
    times: dict[str, list[float]] = {"starlette": [], "orjson": []}
    sizes = []
    for _ in range(args.rounds):
        for a in answers:
            for name, cls in (("starlette", JSONResponse), ("orjson", BulkJSONResponse)):
                t0 = time.process_time()
                body = cls(a).body
                times[name].append((time.process_time() - t0) * 1000)
            sizes.append(len(body))
    out = {
        "benchmark": "gateway_render",
        "command": " ".join(["python", *sys.argv]),
        "git": git_state(),
        "patterns": args.patterns,
        "answers": len(answers),
        "body_bytes_mean": round(statistics.mean(sizes)),
        "predictions_mean": statistics.mean(len(a["predictions"]) for a in answers),
        "ms_mean": {k: round(statistics.mean(v), 4) for k, v in times.items()},
        "ms_p50": {k: round(statistics.median(v), 4) for k, v in times.items()},
    }
    out["ratio_p50"] = round(out["ms_p50"]["orjson"] / out["ms_p50"]["starlette"], 4)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
