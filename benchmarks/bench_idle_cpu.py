"""Idle CPU of the dev stack, per process, and what it costs the first command after a pause.

One run starts ``kato-stream dev --no-sample`` (noida-db broker, redis-server, one worker and
the KATO gateway, as ``./run.sh dev`` does) once per variant and round, on free ports and a
fresh data directory, waits for ``ready``, lets it settle, then reads ``utime + stime`` of every
process from ``/proc/<pid>/stat`` at the start and end of each window: CPU seconds per wall
second (1.0 = one core busy).  Then, with the stack still idle, it times commands through the
gateway (HTTP keep-alive): ``first`` is an ``observe`` sent after ``--pause`` to
``--pause`` + 1 s of silence (random: it lands anywhere in the idle consumers' fetch cycle),
``warm`` the ``observe`` right after it (the consumers are polling fast then).  The worker's
log is searched for stall warnings (``seeking back``).

Variants (environment of the dev stack; the same code, only settings differ):

* ``before``: the behaviour of the previous main, by its settings: a fixed 5 ms pause after
  every empty fetch (the maximum equal to the start: no growth), 50 ms for the
  ``kato.patterns`` followers.  (The previous main also capped a pause at the consumer's own
  ``fetch_max_wait_ms``: 5 ms for the gateway's consumer, 50 and 100 ms for the followers,
  the same pauses.)
* ``after``: the defaults now: 5 ms growing to 50 ms while a consumer stays idle
  (``KATO_STREAM_IDLE_FETCH_BACKOFF_MAX_SECONDS``), woken by the process's own sends.

``--define NAME:KEY=VALUE,...`` adds a variant (e.g. another maximum) to compare.

Rounds alternate the variants (ABAB...) so host noise hits both alike.

    python benchmarks/bench_idle_cpu.py --rounds 2 --seconds 30 --settle 10 --probes 8 \
        --pause 3 --variants before,after,max_100ms,batch_within_50ms \
        --define max_100ms:KATO_STREAM_IDLE_FETCH_BACKOFF_MAX_SECONDS=0.1 \
        --define batch_within_50ms:KATO_STREAM_AGENT_BATCH_WITHIN=0.05 \
        --out benchmarks/results/idle_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
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

from kato_stream import procstat  # noqa: E402
from kato_stream.embedded import free_port  # noqa: E402

# Settings that reproduce the previous main's behaviour (the "before" column).
BEFORE = {
    "KATO_STREAM_IDLE_FETCH_BACKOFF_SECONDS": "0.005",
    "KATO_STREAM_IDLE_FETCH_BACKOFF_MAX_SECONDS": "0.005",
    "KATO_STREAM_TAIL_FETCH_BACKOFF_SECONDS": "0.05",
}
VARIANTS: dict[str, dict[str, str]] = {"before": BEFORE, "after": {}}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process of the stack (it must still run)."""
    value = procstat.cpu_seconds(pid)
    if value is None:
        raise RuntimeError(f"process {pid} of the stack is gone")
    return value


def role(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(a.decode(errors="replace") for a in argv)
    if "noida-db" in text:
        return "broker"
    if "redis-server" in text:
        return "redis"
    for name in ("worker", "gateway"):
        if f"kato_stream.cli {name}" in text:
            return name
    return text[:60]


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def start(variant: str, data: Path, log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, web = free_port(), free_port()
    env = {
        **os.environ,
        "KATO_STREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "KATO_STREAM_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "KATO_STREAM_WEB_PORT": str(web),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        **VARIANTS[variant],
    }
    argv = [sys.executable, "-m", "kato_stream.cli", "dev", "--no-sample"]
    argv += ["--port", str(port), "--data-dir", str(data)]
    fh = open(log, "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return proc, port, web


def wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dev exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if "ready: press Ctrl-C" in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"dev not ready in {timeout:.0f} s: {log.read_text()[-2000:]}")


def measure_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    t0, c0 = time.monotonic(), {r: cpu_seconds(p) for r, p in pids.items()}
    time.sleep(seconds)
    t1, c1 = time.monotonic(), {r: cpu_seconds(p) for r, p in pids.items()}
    out = {r: round((c1[r] - c0[r]) / (t1 - t0), 4) for r in pids}
    out["total"] = round(sum(out[r] for r in pids), 4)
    return out


def command_latency(base: str, probes: int, pause: float, seed: int) -> dict[str, list[float]]:
    """``first``: an observe after ``pause`` to ``pause + 1`` s of silence (random, so that it
    lands anywhere in the idle consumers' fetch cycle); ``warm``: the observe right after."""
    rng = random.Random(seed)
    times: dict[str, list[float]] = {"first": [], "warm": []}
    with httpx.Client(base_url=base, timeout=60) as http:
        r = http.post("/sessions", json={"node_id": "bench-idle"})
        r.raise_for_status()
        sid = r.json()["session_id"]
        for i in range(probes):
            time.sleep(pause + rng.random())
            for kind in ("first", "warm"):
                t = time.perf_counter()
                r = http.post(f"/sessions/{sid}/observe", json={"strings": [f"s{i}{kind}"]})
                times[kind].append(time.perf_counter() - t)
                r.raise_for_status()
    return times


def one_run(variant: str, args: argparse.Namespace, tmp: Path, n: int) -> dict[str, Any]:
    data, log = tmp / f"{variant}-{n}", tmp / f"{variant}-{n}.log"
    proc, port, _ = start(variant, data, log)
    try:
        wait_ready(proc, log, 180)
        time.sleep(args.settle)
        pids = {role(p): p for p in sorted(procstat.children(proc.pid))}
        pids["dev"] = proc.pid
        load0 = load_average()
        cpu = measure_cpu(pids, args.seconds)
        lat = command_latency(f"http://127.0.0.1:{port}", args.probes, args.pause, seed=n)
        text = log.read_text(errors="replace")
        return {
            "variant": variant,
            "round": n,
            "cpu_per_wall_second": cpu,
            "load_average_before": load0,
            "latency_ms": {k: [round(1000 * x, 1) for x in v] for k, v in lat.items()},
            "stall_warnings": text.count("seeking back"),
            "warnings": sum("[WARNING]" in line for line in text.splitlines()),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        roles = mine[0]["cpu_per_wall_second"].keys()
        lat = {k: [x for r in mine for x in r["latency_ms"][k]] for k in ("first", "warm")}
        out[variant] = {
            "cpu_per_wall_second_mean": {
                k: round(statistics.fmean(r["cpu_per_wall_second"][k] for r in mine), 4)
                for k in roles
            },
            "first_command_ms": {
                "mean": round(statistics.fmean(lat["first"]), 1),
                "p50": round(statistics.median(lat["first"]), 1),
                "max": max(lat["first"]),
            },
            "warm_command_ms": {
                "p50": round(statistics.median(lat["warm"]), 1),
                "max": max(lat["warm"]),
            },
            "stall_warnings": sum(r["stall_warnings"] for r in mine),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="runs per variant (alternating)")
    ap.add_argument("--seconds", type=float, default=30.0, help="CPU window per run")
    ap.add_argument("--settle", type=float, default=10.0, help="idle seconds before measuring")
    ap.add_argument("--probes", type=int, default=5, help="first/warm command pairs per run")
    ap.add_argument("--pause", type=float, default=5.0, help="silence before each first command")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="subset, in order")
    ap.add_argument(
        "--define",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="an extra variant (environment on top of the defaults), e.g. to try a setting",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    for spec in args.define:
        name, _, pairs = spec.partition(":")
        VARIANTS[name] = dict(kv.split("=", 1) for kv in pairs.split(",") if kv)
    order = [v.strip() for v in args.variants.split(",") if v.strip()]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as d:
        for n in range(args.rounds):
            for variant in order if n % 2 == 0 else list(reversed(order)):
                run = one_run(variant, args, Path(d), n)
                print(json.dumps(run), flush=True)
                runs.append(run)
    result = {
        "benchmark": "bench_idle_cpu",
        "argv": sys.argv[1:],
        "host": {"platform": platform.platform(), "python": platform.python_version()},
        "cpus": os.cpu_count(),
        "variants": {v: VARIANTS[v] for v in order},
        "summary": summarize(runs),
        "runs": runs,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
