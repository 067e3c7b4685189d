"""What read-your-writes costs a KATO client: learn latency through the gateway with and
without waiting for the stores, side by side in one run.

One run starts the embedded stack, one real worker (persisting to ClickHouse, Qdrant and
Redis) and two standalone gateways on it: ``wait`` (the default,
``KATO_STREAM_GATEWAY_WAIT_PERSISTED=true``: a learn is answered once its pattern is in the
stores) and ``nowait`` (answered when the worker answers).  For each of ``--learns`` rounds,
in alternating order, each gateway gets a fresh session: two observes, then a learn, each
over HTTP/1.1 keep-alive.  Observe latency is reported too: it must not change (commands
that learn nothing never wait).

    python benchmarks/bench_learn_sync.py --learns 100 --out benchmarks/results/learn_sync.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks._common import command, emit, machine  # noqa: E402
from benchmarks.bench_gateway import spawn, stop, summary  # noqa: E402
from kato_stream.embedded import EmbeddedStack, free_port  # noqa: E402
from kato_stream.settings import Settings  # noqa: E402
from kato_stream.topics import create_topics, topic_specs  # noqa: E402

VARIANTS = {"wait": True, "nowait": False}


async def warm_up(http: httpx.AsyncClient, timeout: float = 180.0) -> None:
    """Until the gateway's first session opens: the worker behind it answers commands."""
    deadline = time.monotonic() + timeout
    while True:
        r = await http.post("/sessions", json={"node_id": "bench-warm-up"})
        if r.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no session opened within {timeout:.0f} s: {r.text}")
        await asyncio.sleep(1.0)


async def measure(args: argparse.Namespace, bases: dict[str, str]) -> dict[str, Any]:
    times: dict[str, list[float]] = {
        f"{v}_{op}": [] for v in VARIANTS for op in ("learn", "observe")
    }
    clients = {v: httpx.AsyncClient(base_url=b, timeout=60) for v, b in bases.items()}
    try:
        for http in clients.values():  # the worker may still be joining its group
            await warm_up(http)
        for i in range(args.learns):
            order = list(VARIANTS) if i % 2 == 0 else list(reversed(VARIANTS))
            for v in order:
                http = clients[v]
                r = await http.post("/sessions", json={"node_id": f"bench-{v}"})
                assert r.status_code == 200, r.text
                sid = r.json()["session_id"]
                for sym in (f"a{i}", f"b{i}"):
                    t = time.perf_counter()
                    r = await http.post(
                        f"/sessions/{sid}/observe",
                        json={"strings": [sym], "emotives": {"joy": 0.5}},
                    )
                    times[f"{v}_observe"].append(time.perf_counter() - t)
                    assert r.status_code == 200, r.text
                t = time.perf_counter()
                r = await http.post(f"/sessions/{sid}/learn")
                times[f"{v}_learn"].append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
    finally:
        for c in clients.values():
            await c.aclose()
    out: dict[str, Any] = {k: summary(s) for k, s in times.items()}
    for op in ("learn", "observe"):
        out[f"{op}_p50_ratio_wait_over_nowait"] = round(
            out[f"wait_{op}"]["p50_ms"] / out[f"nowait_{op}"]["p50_ms"], 3
        )
        out[f"{op}_p50_added_ms"] = round(
            out[f"wait_{op}"]["p50_ms"] - out[f"nowait_{op}"]["p50_ms"], 3
        )
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-learn-sync-"))
    stack = EmbeddedStack(tmp / "stack")
    await stack.start()
    procs = []
    try:
        s = dataclasses.replace(
            stack.settings(Settings()),
            topic_prefix="bench",
            partitions=2,
            data_dir=str(tmp / "worker"),
            app_id="kato-stream-bench",
            web_port=0,  # no metrics port: runs beside a `./run.sh dev` on 6066
        )
        await create_topics(s.kafka_bootstrap, topic_specs(s))
        procs.append(
            spawn([sys.executable, "-m", "kato_stream.cli", "worker"], s, tmp / "worker.log")
        )
        bases = {}
        for v, wait in VARIANTS.items():
            port = free_port()
            log = tmp / f"gateway-{v}.log"
            gs = dataclasses.replace(s, gateway_wait_persisted=wait, web_port=0)
            argv = [sys.executable, "-m", "kato_stream.cli", "gateway", "--port", str(port)]
            procs.append(spawn(argv, gs, log))
            deadline = time.monotonic() + 120
            while "gateway ready" not in log.read_text(errors="replace"):
                if time.monotonic() > deadline or procs[-1].poll() is not None:
                    raise RuntimeError(log.read_text(errors="replace")[-2000:])
                await asyncio.sleep(0.1)
            bases[v] = f"http://127.0.0.1:{port}"
        result = await measure(args, bases)
    finally:
        for p in reversed(procs):
            stop(p)
        await stack.stop()
    return {
        "benchmark": "learn_sync",
        "command": command(__file__),
        "machine": machine(),
        "learns": args.learns,
        "results": result,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--learns", type=int, default=100)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    emit(asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
