"""Gateway benchmark: KATO REST request latency next to the same command sent to the topic.

One run starts the embedded stack (noida-db Kafka + redis-server), a real worker process and
a standalone gateway process (``kato-stream gateway``), loads ``--patterns`` patterns of
KATO's workload shape (seed 42, as benchmarks/bench_core.py) and then, interleaved, for
each of ``--queries`` queries (2-4 observations, then predictions, then clear-stm):

* ``http``: ``POST /sessions/{id}/observe`` and ``GET /sessions/{id}/predictions`` over
  HTTP/1.1 keep-alive (httpx) to the gateway;
* ``topic``: the same ``observe`` / ``predict`` envelopes published to ``<prefix>.observations``
  and awaited on ``<prefix>.predictions`` (the gateway's own stream client, in this process).

The difference is the gateway's cost: HTTP + validation + the Redis session check.  The
topics are trimmed after the preload and every 10 queries, outside the timed requests
(``TRIM_ENV``).  The
report also gives, from the gateway's own ``/metrics``, its mean time per route and, per
command, the stream stages inside it (``gateway_time_mean_ms``: the broker's acknowledgement
of the input, then the wait for the answer).

    python benchmarks/bench_gateway.py --patterns 1000 --queries 200 \
        --out benchmarks/results/gateway.json

Settings come from this shell's ``KATO_STREAM_*`` variables.  ``--compare-env K=V,...`` runs
a variant B with those on top, alternating with A for ``--rounds`` rounds, each on a fresh
stack, and reports the median of the rounds' p50s per path and B/A:

    python benchmarks/bench_gateway.py --patterns 1000 --queries 60 --rounds 2 \
        --compare-env KATO_STREAM_REPLY_FETCH_BACKOFF_SECONDS=0 \
        --out benchmarks/results/gateway_reply_window_ab.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks._common import command, emit, machine, trim_topics  # noqa: E402
from benchmarks.bench_core import VOCAB, make_patterns  # noqa: E402
from kato_stream import fetch_backoff  # noqa: E402
from kato_stream.embedded import EmbeddedStack, free_port  # noqa: E402
from kato_stream.gateway.client import StreamClient, new_msg_id  # noqa: E402
from kato_stream.settings import Settings  # noqa: E402
from kato_stream.topics import create_topics, topic_specs  # noqa: E402


def make_query(rng: random.Random, patterns: list[list[list[str]]]) -> list[list[str]]:
    src = rng.choice(patterns)
    events = []
    for ev in src[: rng.randint(2, min(4, len(src)))]:
        keep = [t for t in ev if rng.random() < rng.uniform(0.3, 0.7)] or ev[:1]
        events.append(sorted(set(keep + rng.choices(VOCAB, k=rng.randint(0, 3)))))
    return events


def spawn(argv: list[str], s: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **s.to_env(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as fh:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "n": len(s),
        "mean_ms": round(1000 * statistics.fmean(s), 3),
        "p50_ms": round(1000 * s[len(s) // 2], 3),
        "p95_ms": round(1000 * s[min(len(s) - 1, int(len(s) * 0.95))], 3),
        "p99_ms": round(1000 * s[min(len(s) - 1, int(len(s) * 0.99))], 3),
    }


def gateway_breakdown(exposition: str) -> dict[str, dict[str, float]]:
    """Where the gateway's requests spent their time, from its own /metrics (means in ms):
    per route the whole request (``kato_request_duration_seconds``), per command op its
    stages on the stream (``kato_gateway_exchange_seconds``: publish = until the broker
    acknowledged the input, answer = from then until the output record was read)."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[tuple[str, str], list[float]] = {}
    for fam in text_string_to_metric_families(exposition):
        if fam.name not in ("kato_request_duration_seconds", "kato_gateway_exchange_seconds"):
            continue
        for smp in fam.samples:
            if smp.name.endswith("_sum") or smp.name.endswith("_count"):
                if fam.name == "kato_request_duration_seconds":
                    key = ("request " + smp.labels["method"], smp.labels["route"])
                else:
                    key = ("exchange " + smp.labels["op"], smp.labels["stage"])
                acc = sums.setdefault(key, [0.0, 0.0])
                acc[0 if smp.name.endswith("_sum") else 1] += smp.value
    out: dict[str, dict[str, float]] = {}
    for (what, part), (total, n) in sorted(sums.items()):
        if n:
            out.setdefault(what, {})[part] = round(1000 * total / n, 3)
    return out


#: Trim the input and output topics after the preload and every TRIM_EVERY queries, outside
#: the timed requests (``_common.trim_topics``: the embedded broker rewrites all it holds
#: after writes, so its CPU grows with every 150 KB answer kept).  ``KATO_BENCH_TRIM=0`` (in
#: the shell or in ``--compare-env``) keeps them, as runs before 2026-12-03 (session 12) did.
TRIM_ENV = "KATO_BENCH_TRIM"
TRIM_EVERY = 10


async def measure(
    args: argparse.Namespace, s: Settings, base: str, trim: bool = True
) -> dict[str, Any]:
    rng = random.Random(42)
    patterns = make_patterns(rng, args.patterns)
    queries = [make_query(rng, patterns) for _ in range(args.queries)]
    node = f"bench{int(time.time())}"
    client = StreamClient(
        s.kafka_bootstrap, s.topic("observations"), s.topic("predictions"), timeout=120
    )
    if not args.spin:  # as the gateway's own client fetches (Gateway.on_start)
        fetch_backoff.install_from(s)
    await client.start()
    times: dict[str, list[float]] = {
        k: [] for k in ("http_observe", "topic_observe", "http_predictions", "topic_predictions")
    }
    try:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            loader = "bench-loader"
            t0 = time.perf_counter()
            for i, pat in enumerate(patterns):
                obs = [{"strings": ev} for ev in pat]
                rec = await client.request(
                    "observe_sequence",
                    loader,
                    node,
                    {"observations": obs, "learn_at_end": True},
                    msg_id=f"load-{node}-{i}",
                )
                assert rec["status"] == "ok", rec
            load_s = time.perf_counter() - t0
            io_topics = [s.topic("observations"), s.topic("predictions")]
            trimmed = await trim_topics(s.kafka_bootstrap, io_topics) if trim else 0
            sid = (await http.post("/sessions", json={"node_id": node})).json()["session_id"]
            direct = "bench-direct"
            await client.request("clear_stm", direct, node)
            for n, q in enumerate(queries, 1):
                for ev in q:
                    t = time.perf_counter()
                    r = await http.post(f"/sessions/{sid}/observe", json={"strings": ev})
                    times["http_observe"].append(time.perf_counter() - t)
                    assert r.status_code == 200, r.text
                    t = time.perf_counter()
                    rec = await client.request(
                        "observe", direct, node, {"strings": ev}, msg_id=new_msg_id("obs")
                    )
                    times["topic_observe"].append(time.perf_counter() - t)
                    assert rec["status"] == "ok", rec
                t = time.perf_counter()
                r = await http.get(f"/sessions/{sid}/predictions")
                times["http_predictions"].append(time.perf_counter() - t)
                t = time.perf_counter()
                rec = await client.request("predict", direct, node)
                times["topic_predictions"].append(time.perf_counter() - t)
                assert r.json()["count"] == rec["response"]["count"]
                await http.post(f"/sessions/{sid}/clear-stm")
                await client.request("clear_stm", direct, node)
                if trim and n % TRIM_EVERY == 0:
                    trimmed += await trim_topics(s.kafka_bootstrap, io_topics)
            where = gateway_breakdown((await http.get("/metrics/prometheus")).text)
    finally:
        await client.stop()
    out: dict[str, Any] = {k: summary(v) for k, v in times.items()}
    out["gateway_time_mean_ms"] = where
    for op in ("observe", "predictions"):
        out[f"gateway_overhead_{op}_p50_ms"] = round(
            out[f"http_{op}"]["p50_ms"] - out[f"topic_{op}"]["p50_ms"], 3
        )
    out["load_patterns_per_s"] = round(args.patterns / load_s, 1)
    out["trimmed_records"] = trimmed
    return out


async def main_async(args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, Any]:
    variables = {**os.environ, **(env or {})}  # + a variant's
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    stack = EmbeddedStack(tmp / "stack")
    await stack.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        s = dataclasses.replace(
            stack.settings(Settings.from_env(variables)),
            topic_prefix="bench",
            partitions=args.partitions,
            data_dir=str(tmp / "worker"),
            app_id="kato-stream-bench",
            web_port=0,  # no metrics port: runs beside a `./run.sh dev` on 6066
        )
        await create_topics(s.kafka_bootstrap, topic_specs(s))
        procs.append(
            spawn([sys.executable, "-m", "kato_stream.cli", "worker"], s, tmp / "worker.log")
        )
        port = free_port()
        log = tmp / "gateway.log"
        procs.append(
            spawn([sys.executable, "-m", "kato_stream.cli", "gateway", "--port", str(port)], s, log)
        )
        deadline = time.monotonic() + 120
        while "gateway ready" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or procs[-1].poll() is not None:
                raise RuntimeError(log.read_text(errors="replace")[-2000:])
            await asyncio.sleep(0.1)
        trim = variables.get(TRIM_ENV, "1") != "0"
        result = await measure(args, s, f"http://127.0.0.1:{port}", trim)
    finally:
        for p in reversed(procs):
            stop(p)
        await stack.stop()
    return {**header(args), "results": result}


def header(args: argparse.Namespace) -> dict[str, Any]:
    """What every result file of this benchmark starts with: how it was run, and where."""
    return {
        "benchmark": "gateway",
        "command": command(__file__),
        "machine": machine(),
        "patterns": args.patterns,
        "queries": args.queries,
        "partitions": args.partitions,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--patterns", type=int, default=1000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument(
        "--spin",
        action="store_true",
        help="the topic path's client re-fetches at once after an empty fetch (aiokafka's "
        "own behaviour on the embedded broker, ~1 core) instead of pausing as the gateway's",
    )
    p.add_argument(
        "--compare-env",
        default="",
        metavar="K=V,...",
        help="also run variant B with these settings, alternating with A (the defaults) "
        "for --rounds rounds, each on a fresh stack; reports both and B/A",
    )
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if not args.compare_env:
        emit(asyncio.run(main_async(args)), args.out)
        return
    env_b = dict(kv.split("=", 1) for kv in args.compare_env.split(","))
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for _ in range(args.rounds):  # ABAB...: host noise hits both alike
        runs["A"].append(asyncio.run(main_async(args))["results"])
        runs["B"].append(asyncio.run(main_async(args, env_b))["results"])
    emit(compare(args, env_b, runs), args.out)


def compare(
    args: argparse.Namespace, env_b: dict[str, str], runs: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Both variants' rounds, the median of their rounds' p50s per path, and B/A."""
    paths = ("http_observe", "topic_observe", "http_predictions", "topic_predictions")
    med = {
        v: {k: statistics.median(r[k]["p50_ms"] for r in rs) for k in paths}
        for v, rs in runs.items()
    }
    return {
        **header(args),
        "variants": {"A": {}, "B": env_b},
        "results": {
            "median_p50_ms": med,
            "b_over_a_p50": {k: round(med["B"][k] / med["A"][k], 3) for k in paths},
            "rounds": runs,
        },
    }


if __name__ == "__main__":
    main()
