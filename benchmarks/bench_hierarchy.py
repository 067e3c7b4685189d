"""Tokens per second through KATO-LM's 4-level chain (15 / 15 / 15): the stream's
``forward_to`` chain on one worker, side by side with KATO-LM's client-side loop through
the gateway (docs/hierarchy.md).

One run starts the embedded stack (noida-db Kafka + redis-server), ONE real worker
(persisting, default settings) and one standalone gateway, then, for each of ``--rounds``
rounds (variants in alternating order, ABBA..., fresh node ids per round and variant), feeds
the same corpus slice (the first ``--tokens`` words of ``/usr/share/common-licenses``, the
corpus of examples/hierarchy.py, one document = one file = one session per level, as the
example does) to:

* ``stream``: the example's records, published to ``kato.observations`` at once: per file
  the chain's ``open`` on every level (``max_pattern_length`` 15, ``forward_to`` the next
  level) and its tokens as ``observe`` at level 0.  The worker forwards each learned pattern
  name up.  Time from the first publish to the answer (on ``kato.predictions``) of the last
  command of the run: the benchmark counts the answers for the run's node ids against the
  expected number, opens + tokens + forwards, where each answer of levels 0..2 adds one
  expected forward per pattern it learned.  When the count is reached no forward is
  outstanding, so no quiescence rule is needed; afterwards the benchmark listens 2 s more
  (not timed) to catch any answer beyond the expected ones (reported as ``extra_answers``,
  must be 0).
* ``client_loop``: KATO-LM's loop, one httpx AsyncClient (keep-alive), one request in
  flight: per file a gateway session per level (``POST /sessions`` with the same config,
  no ``forward_to``), then for each token ``POST /sessions/{sid}/observe`` at level 0 and,
  whenever an answer has ``auto_learned_pattern``, an observe of that name at the next
  level, and so on.  The gateway waits for a learned pattern to be persisted before it
  answers (its default, ``KATO_STREAM_GATEWAY_WAIT_PERSISTED``; KATO's learn is synchronous
  too); ``--gateway-nowait`` turns that off.

Both variants set ``process_predictions: false`` on every level (training; ``--predictions``
keeps predictions on).  Per variant: tokens/s (median over rounds; the stream/client_loop
ratio is taken within each round), the patterns learned per level, which must be the same
multiset of names for both variants in every round (asserted), and the worker's CPU seconds
(``/proc/<pid>/stat``) per token, over the timed window and including the persister's tail
after it (until the worker uses less than 0.3 of a core over a second).

    python benchmarks/bench_hierarchy.py --tokens 20000 --rounds 3 \\
        --out benchmarks/results/hierarchy.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from benchmarks._common import command, emit, git_state, machine  # noqa: E402
from benchmarks.bench_gateway import spawn, stop  # noqa: E402
from examples.hierarchy import (  # noqa: E402
    DEFAULT_CORPUS,
    chain_opens,
    corpus_files,
    observes,
    tokens,
)
from kato_stream.embedded import EmbeddedStack, free_port  # noqa: E402
from kato_stream.procstat import cpu_seconds  # noqa: E402
from kato_stream.settings import Settings  # noqa: E402
from kato_stream.topics import create_topics, topic_specs  # noqa: E402

VARIANTS = ("stream", "client_loop")
_LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")


def corpus_slice(paths: list[Path], limit: int) -> list[tuple[str, list[str]]]:
    """(file name, words) per file, the first ``limit`` words in all (examples/hierarchy.py)."""
    out = []
    budget = limit
    for f in corpus_files(paths):
        words = list(tokens(f))[: max(0, budget)]
        budget -= len(words)
        if words:
            out.append((f.name, words))
        if budget <= 0:
            break
    return out


def cpu(pid: int) -> float:
    return cpu_seconds(pid) or 0.0


async def settle(pid: int, cores: float = 0.3, timeout: float = 90.0) -> float:
    """Seconds until ``pid`` used less than ``cores`` of a core over one second."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = cpu(pid)
        await asyncio.sleep(1.0)
        if cpu(pid) - before < cores:
            break
    return round(time.monotonic() - t0, 1)


@dataclasses.dataclass
class Rig:
    s: Settings
    base: str
    worker: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]


def config(args: argparse.Namespace) -> dict[str, Any]:
    c: dict[str, Any] = {"max_pattern_length": args.chunk}
    if not args.predictions:
        c["process_predictions"] = False
    return c


async def run_stream(
    args: argparse.Namespace, rig: Rig, docs: list[tuple[str, list[str]]]
) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    s = rig.s
    tag = uuid.uuid4().hex[:6]
    nodes = [f"st{i}-{tag}" for i in range(args.levels)]
    level_of = {n: i for i, n in enumerate(nodes)}
    records: list[tuple[bytes, bytes]] = []
    n_opens = 0
    for i, (_name, words) in enumerate(docs):
        doc = f"doc{i}-{tag}"
        opens = chain_opens(doc, nodes, args.chunk, args.predictions)
        n_opens += len(opens)
        records += opens + list(observes(doc, nodes[0], words))
    n_tokens = sum(len(w) for _, w in docs)

    out_topic = s.topic("predictions")
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=None)
    await consumer.start()
    parts = [TopicPartition(out_topic, p) for p in consumer.partitions_for_topic(out_topic) or []]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for p in parts:  # resolve the end offsets now, not after the first publish
        await consumer.position(p)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=5)
    await producer.start()
    learned: list[Counter[str]] = [Counter() for _ in nodes]
    statuses: Counter[str] = Counter()
    by_op: Counter[str] = Counter()
    expected = n_opens + n_tokens
    answered = 0
    extra = 0
    try:
        cpu0 = cpu(rig.worker.pid)
        t0 = time.monotonic()
        for key, value in records:
            await producer.send(s.topic("observations"), value, key=key)
        await producer.flush()
        published_s = time.monotonic() - t0
        last_progress = time.monotonic()
        t_end = None
        while answered < expected:
            if time.monotonic() - last_progress > args.stall:
                raise RuntimeError(
                    f"stream stalled: {answered} of {expected} answers, none for {args.stall} s"
                )
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                for r in recs:
                    rec = orjson.loads(r.value)
                    level = level_of.get(rec.get("node_id"))
                    if level is None:
                        continue
                    answered += 1
                    statuses[str(rec.get("status"))] += 1
                    by_op[f"{rec.get('op')}@{level}"] += 1
                    names = rec.get("learned_patterns") or []
                    learned[level].update(names)
                    if level + 1 < len(nodes):
                        expected += len(names)
                    last_progress = time.monotonic()
            if answered >= expected:
                t_end = time.monotonic()
        assert t_end is not None
        elapsed = t_end - t0
        cpu1 = cpu(rig.worker.pid)
        quiet_until = time.monotonic() + 2.0  # anything beyond the expected answers?
        while time.monotonic() < quiet_until:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                extra += sum(1 for r in recs if orjson.loads(r.value).get("node_id") in level_of)
    finally:
        await producer.stop()
        await consumer.stop()
    tail = await settle(rig.worker.pid)
    cpu2 = cpu(rig.worker.pid)
    return {
        "nodes": nodes,
        "tokens": n_tokens,
        "opens": n_opens,
        "forwards": expected - n_opens - n_tokens,
        "answers": answered,
        "extra_answers": extra,
        "statuses": dict(statuses),
        "answers_by_op_level": dict(sorted(by_op.items())),
        "publish_s": round(published_s, 3),
        "elapsed_s": round(elapsed, 3),
        "tokens_per_s": round(n_tokens / elapsed, 1),
        "worker_cpu_s": round(cpu1 - cpu0, 2),
        "worker_cpu_s_incl_tail": round(cpu2 - cpu0, 2),
        "settle_after_s": tail,
        "learned": learned,
    }


async def run_client_loop(
    args: argparse.Namespace, rig: Rig, docs: list[tuple[str, list[str]]]
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    nodes = [f"cl{i}-{tag}" for i in range(args.levels)]
    learned: list[Counter[str]] = [Counter() for _ in nodes]
    requests: Counter[str] = Counter()
    n_tokens = sum(len(w) for _, w in docs)
    cfg = config(args)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=rig.base, timeout=120, limits=limits) as http:

        async def observe(sids: list[str], level: int, symbol: str) -> None:
            r = await http.post(f"/sessions/{sids[level]}/observe", json={"strings": [symbol]})
            assert r.status_code == 200, r.text
            requests[f"observe@{level}"] += 1
            name = r.json().get("auto_learned_pattern")
            if name:
                learned[level][name] += 1
                if level + 1 < len(sids):
                    await observe(sids, level + 1, name)

        cpu0, gcpu0 = cpu(rig.worker.pid), cpu(rig.gateway.pid)
        t0 = time.monotonic()
        for _name, words in docs:
            sids = []
            for node in nodes:
                r = await http.post("/sessions", json={"node_id": node, "config": cfg})
                assert r.status_code == 200, r.text
                requests["create_session"] += 1
                sids.append(str(r.json()["session_id"]))
            for w in words:
                await observe(sids, 0, w)
        elapsed = time.monotonic() - t0
        cpu1, gcpu1 = cpu(rig.worker.pid), cpu(rig.gateway.pid)
    tail = await settle(rig.worker.pid)
    cpu2 = cpu(rig.worker.pid)
    n_req = sum(requests.values())
    return {
        "nodes": nodes,
        "tokens": n_tokens,
        "requests": dict(sorted(requests.items())),
        "elapsed_s": round(elapsed, 3),
        "tokens_per_s": round(n_tokens / elapsed, 1),
        "requests_per_s": round(n_req / elapsed, 1),
        "ms_per_request": round(1000 * elapsed / n_req, 2),
        "worker_cpu_s": round(cpu1 - cpu0, 2),
        "worker_cpu_s_incl_tail": round(cpu2 - cpu0, 2),
        "gateway_cpu_s": round(gcpu1 - gcpu0, 2),
        "settle_after_s": tail,
        "learned": learned,
    }


RUNNERS = {"stream": run_stream, "client_loop": run_client_loop}


async def warm_up(base: str, timeout: float = 180.0) -> float:
    """Seconds until the worker answers an observe through the gateway (group join)."""
    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        sid = (await http.post("/sessions", json={"node_id": "warmup"})).json()["session_id"]
        while True:
            r = await http.post(f"/sessions/{sid}/observe", json={"strings": ["warm"]})
            if r.status_code == 200:
                return round(time.monotonic() - t0, 1)
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"worker not answering: {r.status_code} {r.text}")
            await asyncio.sleep(1.0)


def log_problems(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [ln[:300] for ln in lines if _LOG_PROBLEM.search(ln)]


def per_level(c: list[Counter[str]]) -> list[int]:
    return [sum(x.values()) for x in c]


async def measure(args: argparse.Namespace, rig: Rig) -> dict[str, Any]:
    docs = corpus_slice(args.corpus, args.tokens)
    rounds = []
    for i in range(args.rounds):
        order = list(VARIANTS) if i % 2 == 0 else list(reversed(VARIANTS))
        res: dict[str, Any] = {"order": order}
        for v in order:
            await settle(rig.worker.pid)
            print(f"round {i + 1}: {v} ...", file=sys.stderr, flush=True)
            res[v] = await RUNNERS[v](args, rig, docs)
            print(
                f"round {i + 1}: {v} {res[v]['tokens_per_s']} tokens/s in "
                f"{res[v]['elapsed_s']} s, learned {per_level(res[v]['learned'])}",
                file=sys.stderr,
                flush=True,
            )
        a, b = res["stream"]["learned"], res["client_loop"]["learned"]
        for level, (x, y) in enumerate(zip(a, b, strict=True)):
            assert x == y, (
                f"round {i + 1}, level {level}: the stream learned {sum(x.values())} "
                f"({len(x)} distinct), the client loop {sum(y.values())} ({len(y)} distinct)"
            )
        res["same_patterns_every_level"] = True
        res["patterns_learned_per_level"] = per_level(a)
        res["distinct_patterns_per_level"] = [len(x) for x in a]
        for v in VARIANTS:
            del res[v]["learned"]
        res["ratio_stream_over_client_loop"] = round(
            res["stream"]["tokens_per_s"] / res["client_loop"]["tokens_per_s"], 2
        )
        rounds.append(res)

    def med(key: str, v: str) -> float:
        return round(float(statistics.median(r[v][key] for r in rounds)), 3)

    n_tokens = rounds[0]["stream"]["tokens"]
    summary: dict[str, Any] = {}
    for v in VARIANTS:
        summary[v] = {
            "tokens_per_s_median": med("tokens_per_s", v),
            "tokens_per_s_rounds": [r[v]["tokens_per_s"] for r in rounds],
            "elapsed_s_median": med("elapsed_s", v),
            "worker_cpu_ms_per_token": round(1000 * med("worker_cpu_s", v) / n_tokens, 3),
            "worker_cpu_ms_per_token_incl_tail": round(
                1000 * med("worker_cpu_s_incl_tail", v) / n_tokens, 3
            ),
        }
    summary["client_loop"]["ms_per_request_median"] = med("ms_per_request", "client_loop")
    summary["client_loop"]["gateway_cpu_ms_per_token"] = round(
        1000 * med("gateway_cpu_s", "client_loop") / n_tokens, 3
    )
    ratios = [r["ratio_stream_over_client_loop"] for r in rounds]
    summary["ratio_stream_over_client_loop_median"] = round(statistics.median(ratios), 2)
    summary["ratio_stream_over_client_loop_rounds"] = ratios
    summary["patterns_learned_per_level"] = rounds[0]["patterns_learned_per_level"]
    summary["same_patterns_every_level_every_round"] = True
    return {
        "corpus": [str(p) for p in args.corpus],
        "files": [name for name, _ in docs],
        "tokens": n_tokens,
        "summary": summary,
        "rounds": rounds,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-hierarchy-"))
    stack = EmbeddedStack(tmp / "stack")
    await stack.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        s = dataclasses.replace(
            stack.settings(Settings()),
            topic_prefix="bench",
            partitions=args.partitions,
            data_dir=str(tmp / "worker"),
            app_id="kato-stream-bench",
            web_port=0,  # no metrics port: runs beside a `./run.sh dev` on 6066
        )
        await create_topics(s.kafka_bootstrap, topic_specs(s))
        worker = spawn([sys.executable, "-m", "kato_stream.cli", "worker"], s, tmp / "worker.log")
        procs.append(worker)
        port = free_port()
        log = tmp / "gateway.log"
        gs = dataclasses.replace(s, gateway_wait_persisted=not args.gateway_nowait, web_port=0)
        argv = [sys.executable, "-m", "kato_stream.cli", "gateway", "--port", str(port)]
        gateway = spawn(argv, gs, log)
        procs.append(gateway)
        deadline = time.monotonic() + 120
        while "gateway ready" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or gateway.poll() is not None:
                raise RuntimeError(log.read_text(errors="replace")[-2000:])
            await asyncio.sleep(0.1)
        rig = Rig(s, f"http://127.0.0.1:{port}", worker, gateway)
        ready_s = await warm_up(rig.base)
        print(f"worker ready after {ready_s} s (logs in {tmp})", file=sys.stderr, flush=True)
        result = await measure(args, rig)
    finally:
        for p in reversed(procs):
            stop(p)
        await stack.stop()
    result["log_problems"] = {
        "worker": log_problems(tmp / "worker.log"),
        "gateway": log_problems(tmp / "gateway.log"),
    }
    return {
        "benchmark": "hierarchy",
        "command": command(__file__),
        "machine": machine(),
        "git": git_state(),
        "levels": args.levels,
        "chunk": args.chunk,
        "predictions": args.predictions,
        "gateway_wait_persisted": not args.gateway_nowait,
        "partitions": args.partitions,
        "rounds": args.rounds,
        "results": result,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("corpus", nargs="*", type=Path, default=[DEFAULT_CORPUS])
    p.add_argument("--tokens", type=int, default=20_000, help="words of the corpus to send")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--chunk", type=int, default=15, help="max_pattern_length of every level")
    p.add_argument("--predictions", action="store_true", help="keep predictions on (training)")
    p.add_argument(
        "--gateway-nowait",
        action="store_true",
        help="the gateway answers a learn before its pattern is persisted",
    )
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--stall", type=float, default=120.0, help="seconds without an answer = stall")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    emit(asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
