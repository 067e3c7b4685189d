"""End-to-end stream benchmark: one real worker next to a pass-through Faust agent.

One run starts the embedded stack (noida-db Kafka + redis-server; chdb and Qdrant local
storage inside the worker), then two Faust processes on the same broker:

* ``kato``: ONE real worker (``python -m kato_stream.cli worker``, defaults: persistence on,
  ``memory://`` table store, ``--partitions`` partitions);
* ``passthrough``: the plumbing limit, a minimal faust-streaming app (this file,
  ``passthrough`` sub-command) built with the same ``faust.App`` options, consuming its own
  input topic of the same partition count; per message it parses the envelope, reads and
  writes one table entry, sends one small record (with the msg_id) to its output topic and
  awaits the send, as the real agent does;
* ``passthrough_payload`` (``--pt-payload BYTES``, default 150,000: about a kato output
  record at 100 predictions; 0 = off): the same agent in a second process on its own
  topics, whose output records carry ``BYTES`` of padding.  It is the plumbing limit for
  records of kato's size, so the gap between it and kato is the stream layer's and the
  engine's own cost.  The goal is still stated against the plain pass-through.

The knowledge bases (``--sizes``, default 1,000 and 10,000 patterns, one node each) are
preloaded THROUGH THE STREAM with ordinary learn commands (loadgen's ``preload_patterns``,
mode ``autolearn``): patterns grouped by length L, one session per group opened with
``max_pattern_length`` L, ``stm_mode`` CLEAR and ``process_predictions`` false, and
``--preload-batch`` patterns' events per ``observe_sequence``: auto-learn learns each pattern
when its L-th event arrives and clears the STM.  The worker learns, publishes (kato.patterns)
and persists them like any client's; the report counts the learned names in the records.
The commands are kato_stream.tools.loadgen's (its Workload, preload and latency tracking):
``--sessions`` sessions replay stored patterns event by event with noise, with a
``clear_stm`` after each pattern.

Per target and round, two phases:

* ``saturated``: as fast as possible with at most ``--window`` commands in flight (a
  bounded backlog): throughput = records/s from the first send to the last record;
  latency there is mostly queueing (about window / throughput);
* ``paced``: a fixed moderate ``--rate`` msgs/s, the same for every target: latency
  p50/p95/p99 from publish to the prediction record.

Every target's output topic gets ``retention.ms`` = ``--output-retention-ms`` (30 s): noida-db
keeps all it stores in one JSON file that it rewrites as a whole (about 4 bytes of JSON per
payload byte), so output kept from earlier phases (150 KB records) would slow the broker for
every later phase, whichever target wrote it.

Rounds alternate the order of the targets (round 2 runs them in reverse) so that drift in
the machine's load hits every target alike; the summary pools the rounds.  Each phase also
records the CPU seconds of every process of the run and of the whole host (``foreign``:
host CPU not used by this run's processes, i.e. other people's load), and the load average.

    .venv/bin/python benchmarks/bench_stream.py --out benchmarks/results/stream.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import trim_topics  # noqa: E402
from kato_stream import procstat  # noqa: E402
from kato_stream.embedded import EmbeddedStack, free_port  # noqa: E402
from kato_stream.settings import Settings  # noqa: E402
from kato_stream.tools.loadgen import (  # noqa: E402
    LoadClient,
    Workload,
    measure,
    percentile,
    preload_patterns,
)
from kato_stream.topics import TopicSpec, create_topics, topic_specs  # noqa: E402

PREFIX = "bench"
PT_PREFIX = "benchpt"
PREFIX_B = "benchb"
PT_PAYLOAD_PREFIX = "benchptp"
PAD_ENV = "KATO_BENCH_PT_PAD"  # output padding of a pass-through process (bytes)

# -- machine and process accounting ---------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def git(*args: str) -> str:
    """Output of a read-only git command in the repository ('' if git is unavailable)."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=10, text=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    dirty = [ln[3:] for ln in git("status", "--porcelain").splitlines() if ln[3:].endswith(".py")]
    dirty += [ln[3:] for ln in git("status", "--porcelain").splitlines() if ln[3:].endswith(".c")]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mem_total_bytes": mem,
        "git_head": git("rev-parse", "HEAD"),
        "git_uncommitted_code": sorted(dirty),
        "loadavg_start": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def proc_cpu_seconds(pid: int | None) -> float:
    """user + system CPU seconds of one process (0.0 if it is gone)."""
    cpu = procstat.cpu_seconds(pid) if pid is not None else None
    return 0.0 if cpu is None else cpu


def proc_rss_bytes(pid: int | None) -> int:
    if pid is None:
        return 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def host_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the host since boot, all cores."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return (total - idle) / _TICK, total / _TICK


class CpuMeter:
    """CPU used by named processes (and the host) between ``start`` and ``stop``."""

    def __init__(self, pids: Callable[[], dict[str, int | None]]) -> None:
        self._pids = pids
        self._t0: dict[str, float] = {}
        self._host0 = (0.0, 0.0)
        self._wall0 = 0.0
        self._load0 = 0.0

    def start(self) -> None:
        self._t0 = {k: proc_cpu_seconds(p) for k, p in self._pids().items()}
        self._t0["bench"] = time.process_time()
        self._host0 = host_cpu_seconds()
        self._wall0 = time.monotonic()
        self._load0 = os.getloadavg()[0]

    def stop(self) -> dict[str, Any]:
        cpu = {k: proc_cpu_seconds(p) - self._t0.get(k, 0.0) for k, p in self._pids().items()}
        cpu["bench"] = time.process_time() - self._t0["bench"]
        busy, total = host_cpu_seconds()
        host_busy = busy - self._host0[0]
        return {
            "wall_s": round(time.monotonic() - self._wall0, 3),
            "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
            "host_busy_cpu_s": round(host_busy, 3),
            "host_cpu_capacity_s": round(total - self._host0[1], 3),
            "foreign_cpu_s": round(max(0.0, host_busy - sum(cpu.values())), 3),
            "loadavg_1m": [round(self._load0, 2), round(os.getloadavg()[0], 2)],
        }


# -- processes --------------------------------------------------------------------------------


def spawn(
    argv: list[str], s: Settings, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **s.to_env(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.update(extra_env or {})
    Path(s.data_dir).mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        return subprocess.Popen(argv, cwd=s.data_dir, env=env, stdout=fh, stderr=subprocess.STDOUT)


def stop_proc(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def faust_app_options(settings: Settings) -> dict[str, Any]:
    """The ``faust.App`` options of kato_stream.stream.app.build_worker (web server off)."""
    return {
        "broker": [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        "store": settings.table_store,
        "datadir": settings.data_dir,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": False,
        "autodiscover": False,
        "producer_max_request_size": max(1_048_576, settings.max_message_bytes * 4),
        "consumer_max_fetch_size": max(4 * 1_048_576, settings.max_message_bytes * 4),
        "broker_commit_every": settings.commit_every,
        "broker_commit_interval": settings.commit_interval,
        "stream_buffer_maxsize": settings.stream_buffer,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": max(0.5, settings.session_timeout / 6),
        "producer_compression_type": None
        if settings.producer_compression == "none"
        else settings.producer_compression,
        "producer_linger": settings.producer_linger_ms / 1000.0,
        "producer_max_batch_size": settings.producer_batch_bytes,
    }


def run_passthrough(settings: Settings) -> None:
    """The pass-through agent (runs in its own process, settings from the environment)."""
    import faust
    import orjson

    from kato_stream.contracts import MSG_ID_HEADER, PROCESSING_HEADER, STATUS_HEADER
    from kato_stream.stream import codecs
    from kato_stream.stream.app import QuietWorker, worker_fetch_backoff

    pad = int(os.environ.get(PAD_ENV, "0"))
    codecs.register_faust_codec()
    worker_fetch_backoff(settings)  # the same plumbing as the worker's
    app = faust.App(settings.app_id, **faust_app_options(settings))

    def raw(name: str) -> Any:
        return app.topic(
            name,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    src, dst = raw(settings.topic("observations")), raw(settings.topic("predictions"))
    table = app.Table(
        "sessions",
        default=None,
        partitions=settings.partitions,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="orjson"),
    )

    @app.agent(src, name="passthrough")
    async def passthrough(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            t0 = time.perf_counter()
            doc = orjson.loads(msg.value)
            sid = str(doc.get("session_id"))
            prev = table.get(sid) or {"n": 0}
            record = {
                "msg_id": doc.get("msg_id"),
                "session_id": sid,
                "op": doc.get("op"),
                "status": "ok",
            }
            if pad:
                record["pad"] = "x" * pad
            out = codecs.dumps(record)
            elapsed = time.perf_counter() - t0
            headers = [(PROCESSING_HEADER, b"%.6f" % elapsed), (STATUS_HEADER, b"ok")]
            if isinstance(record["msg_id"], str):  # named in the headers, as the worker does
                headers.append((MSG_ID_HEADER, record["msg_id"].encode()))
            fut = await dst.send(key=msg.key, value=out, headers=headers)
            await fut  # acknowledged before the table write, as the real agent
            table[sid] = {"n": prev["n"] + 1, "last": doc.get("msg_id")}

    QuietWorker(app, loglevel="warning", redirect_stdouts=False).execute_from_commandline()


class Rig:
    """The embedded stack, the real worker and (optionally) the pass-through app."""

    def __init__(
        self,
        tmp: Path,
        *,
        partitions: int,
        passthrough: bool,
        worker_env: dict[str, str] | None = None,
        compare_env: dict[str, str] | None = None,
        pt_payload: int = 0,
        output_retention_ms: int = 0,
        compression: str = "none",
        trim_outputs: bool = True,
    ) -> None:
        self.tmp = tmp
        self.trim_outputs = trim_outputs
        self.compression = compression
        self.partitions = partitions
        self.want_passthrough = passthrough
        self.pt_payload = pt_payload
        self.output_retention_ms = output_retention_ms
        self.worker_env = worker_env or {}
        self.compare_env = compare_env
        self.stack = EmbeddedStack(tmp / "stack", timeout=60)
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_b: subprocess.Popen[bytes] | None = None
        self.settings_b: Settings | None = None
        self.passthrough: subprocess.Popen[bytes] | None = None
        self.passthrough_payload: subprocess.Popen[bytes] | None = None
        self.settings: Settings | None = None
        self.pt_settings: Settings | None = None
        self.ptp_settings: Settings | None = None

    def _retention(self) -> dict[str, str]:
        """Topic configs of every target's output topic (the same for all)."""
        if not self.output_retention_ms:
            return {}
        return {"retention.ms": str(self.output_retention_ms)}

    def pids(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {"worker": self.worker.pid if self.worker else None}
        if self.worker_b is not None:
            out["worker_b"] = self.worker_b.pid
        if self.passthrough is not None:
            out["passthrough"] = self.passthrough.pid
        if self.passthrough_payload is not None:
            out["passthrough_payload"] = self.passthrough_payload.pid
        names = {"noida-db": "broker", "redis-server": "redis"}
        for p in self.stack.processes:
            out[names.get(p.name, p.name)] = p.pid
        return out

    async def start(self) -> Rig:
        await self.stack.start()
        s, self.worker = await self._worker(self.worker_env, PREFIX, "worker")
        self.settings = s
        if self.compare_env is not None:  # worker B: its own group, topics and stores
            env = {**self.worker_env, **self.compare_env}
            self.settings_b, self.worker_b = await self._worker(env, PREFIX_B, "worker_b")
        if self.want_passthrough:
            self.pt_settings, self.passthrough = await self._passthrough(
                s, PT_PREFIX, "passthrough", 0
            )
            if self.pt_payload:
                self.ptp_settings, self.passthrough_payload = await self._passthrough(
                    s, PT_PAYLOAD_PREFIX, "passthrough_payload", self.pt_payload
                )
        return self

    async def _worker(
        self, env: dict[str, str], prefix: str, name: str
    ) -> tuple[Settings, subprocess.Popen[bytes]]:
        s = dataclasses.replace(
            self.stack.settings(Settings.from_env(env)),
            topic_prefix=prefix,
            app_id=f"kato-stream-{prefix}",
            partitions=self.partitions,
            data_dir=str(self.tmp / name),
            web_port=free_port(),
            producer_compression=self.compression,  # the pass-throughs inherit it
        )
        specs = [
            dataclasses.replace(t, configs={**t.configs, **self._retention()})
            if t.name == s.topic("predictions")
            else t
            for t in topic_specs(s)
        ]
        await create_topics(s.kafka_bootstrap, specs)
        proc = spawn(
            [sys.executable, "-m", "kato_stream.cli", "worker"], s, self.tmp / f"{name}.log"
        )
        return s, proc

    async def _passthrough(
        self, s: Settings, prefix: str, name: str, pad: int
    ) -> tuple[Settings, subprocess.Popen[bytes]]:
        pt = dataclasses.replace(
            s,
            topic_prefix=prefix,
            app_id=f"kato-stream-bench-{prefix}",
            data_dir=str(self.tmp / name),
            web_port=0,
        )
        await create_topics(
            pt.kafka_bootstrap,
            [
                TopicSpec(pt.topic("observations"), pt.partitions),
                TopicSpec(pt.topic("predictions"), pt.partitions, self._retention()),
            ],
        )
        proc = spawn(
            [sys.executable, str(Path(__file__).resolve()), "passthrough"],
            pt,
            self.tmp / f"{name}.log",
            {PAD_ENV: str(pad)},
        )
        return pt, proc

    def topics(self) -> list[str]:
        """Every target's input and output topic."""
        return [
            st.topic(name)
            for st in (self.settings, self.settings_b, self.pt_settings, self.ptp_settings)
            if st is not None
            for name in ("observations", "predictions")
        ]

    async def trim(self) -> int:
        """Delete the records of every target's input and output topic, all answered by
        now (``_common.trim_topics``: the embedded broker's CPU grows with what it holds),
        unless ``--keep-outputs``; returns how many went."""
        if not self.trim_outputs or self.settings is None:
            return 0
        return await trim_topics(self.settings.kafka_bootstrap, self.topics())

    def check_alive(self) -> None:
        for name, proc in (
            ("worker", self.worker),
            ("worker_b", self.worker_b),
            ("passthrough", self.passthrough),
            ("passthrough_payload", self.passthrough_payload),
        ):
            if proc is not None and proc.poll() is not None:
                log = self.tmp / f"{name}.log"
                raise RuntimeError(f"{name} exited:\n{log.read_text(errors='replace')[-3000:]}")

    async def stop(self) -> None:
        stop_proc(self.passthrough)
        stop_proc(self.passthrough_payload)
        stop_proc(self.worker)
        stop_proc(self.worker_b)
        await self.stack.stop()


async def settle(
    pids: Callable[[], dict[str, int | None]], names: list[str], cores: float, timeout: float
) -> float:
    """Seconds until each named process used less than ``cores`` of a core over a second.

    After the preload a worker's persister still writes the learned patterns to ClickHouse,
    Redis and Qdrant for a while; a phase measured meanwhile would share the CPU with it.
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = {n: proc_cpu_seconds(pids().get(n)) for n in names}
        await asyncio.sleep(1.0)
        if all(proc_cpu_seconds(pids().get(n)) - before[n] < cores for n in names):
            break
    return round(time.monotonic() - t0, 1)


async def wait_ready(client: LoadClient, node: str, timeout: float = 180.0) -> float:
    """Seconds until the consumer group answers a ``get`` (group join, LTM bootstrap)."""
    t0 = time.perf_counter()
    await client.request("get", f"probe-{client.run}", node, {}, timeout)
    client.tracker.reset()
    return round(time.perf_counter() - t0, 3)


# -- the benchmark ------------------------------------------------------------------------------


async def run_phase(
    client: LoadClient,
    meter: CpuMeter,
    node: str,
    wl: Workload,
    patterns: list[list[list[str]]],
    proc_name: str,
    tag: str,
    **kw: Any,
) -> dict[str, Any]:
    meter.start()
    r = await measure(client, node, wl, patterns, tag=tag, **kw)
    r["samples_ms"] = sorted(v * 1000.0 for v in client.tracker.latency.values())
    r["machine"] = meter.stop()
    cpu = r["machine"]["cpu_s"].get(proc_name, 0.0)
    r["process_cpu_ms_per_record"] = round(1000.0 * cpu / r["received"], 3) if r["received"] else 0
    return r


def pooled(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one target and phase kind pooled: all latency samples, total records/span."""
    samples = sorted(x for p in phases for x in p["samples_ms"])
    received = sum(p["received"] for p in phases)
    span = sum(p["received"] / p["throughput"] for p in phases if p["throughput"] > 0)
    cpu = sum(p["process_cpu_ms_per_record"] * p["received"] for p in phases)
    preds = [
        p["observe_predictions_mean"] for p in phases if p["observe_predictions_mean"] is not None
    ]
    return {
        "rounds": len(phases),
        "sent": sum(p["sent"] for p in phases),
        "received": received,
        "missing": sum(p["missing"] for p in phases),
        "throughput": round(received / span, 1) if span else 0.0,
        "throughput_per_round": [p["throughput"] for p in phases],
        "latency_ms": {
            "p50": round(percentile(samples, 50), 2),
            "p95": round(percentile(samples, 95), 2),
            "p99": round(percentile(samples, 99), 2),
            "max": round(samples[-1], 2) if samples else 0.0,
        },
        "processing_ms_p50": [p["processing_ms"]["p50"] for p in phases if p["processing_ms"]],
        "process_cpu_ms_per_record": round(cpu / received, 3) if received else 0.0,
        "observe_predictions_mean": round(sum(preds) / len(preds), 1) if preds else None,
        "foreign_cpu_s": round(sum(p["machine"]["foreign_cpu_s"] for p in phases), 2),
        "wall_s": round(sum(p["machine"]["wall_s"] for p in phases), 2),
        "loadavg_1m": [x for p in phases for x in p["machine"]["loadavg_1m"]],
    }


async def bench(args: argparse.Namespace, rig: Rig) -> dict[str, Any]:
    s, pt = rig.settings, rig.pt_settings
    assert s is not None and pt is not None
    wl = Workload(seed=args.seed)
    sizes = sorted({int(x) for x in args.sizes.split(",")})
    all_patterns = wl.patterns(max(sizes))
    nodes = {n: f"bench-{n}" for n in sizes}
    meter = CpuMeter(rig.pids)
    out: dict[str, Any] = {"preload": {}, "ready_s": {}}
    async with contextlib.AsyncExitStack() as stack:
        kc = await stack.enter_async_context(
            LoadClient(s.kafka_bootstrap, s.topic("observations"), s.topic("predictions"))
        )
        pc = await stack.enter_async_context(
            LoadClient(pt.kafka_bootstrap, pt.topic("observations"), pt.topic("predictions"))
        )
        out["ready_s"]["kato"] = await wait_ready(kc, nodes[sizes[0]])
        out["ready_s"]["passthrough"] = await wait_ready(pc, "pt-node")
        targets: list[tuple[str, LoadClient, str, int]] = [("passthrough", pc, "pt-node", sizes[0])]
        ptp = rig.ptp_settings
        if ptp is not None:
            ppc = await stack.enter_async_context(
                LoadClient(ptp.kafka_bootstrap, ptp.topic("observations"), ptp.topic("predictions"))
            )
            out["ready_s"]["passthrough_payload"] = await wait_ready(ppc, "ptp-node")
            targets.append(("passthrough_payload", ppc, "ptp-node", sizes[0]))
        kato = [(kc, nodes, "")]
        if rig.settings_b is not None:
            sb = rig.settings_b
            kcb = await stack.enter_async_context(
                LoadClient(sb.kafka_bootstrap, sb.topic("observations"), sb.topic("predictions"))
            )
            nodes_b = {n: f"benchb-{n}" for n in sizes}
            out["ready_s"]["kato_b"] = await wait_ready(kcb, nodes_b[sizes[0]])
            kato.append((kcb, nodes_b, "_b"))
        for (client, names, suffix), n in itertools.product(kato, sizes):
            meter.start()
            rep = await preload_patterns(
                client,
                names[n],
                all_patterns[:n],
                timeout=args.preload_timeout,
                mode=args.preload_mode,
                config={"process_predictions": False},
                batch=args.preload_batch,
            )
            rep["machine"] = meter.stop()
            rep["patterns_per_s"] = round(n / rep["seconds"], 1)
            out["preload"][f"{n}{suffix}"] = rep
            print(f"preloaded {n}{suffix} patterns in {rep['seconds']:.1f}s", file=sys.stderr)
            rig.check_alive()

        out["trimmed_records"] = await rig.trim()
        workers = [n for n in rig.pids() if n.startswith("worker")]
        out["settle_s"] = await settle(rig.pids, workers, 0.3, args.settle_timeout)
        print(f"workers idle after {out['settle_s']} s", file=sys.stderr)
        targets += [
            (f"kato_{n}{suffix}", client, names[n], n)
            for client, names, suffix in kato
            for n in sizes
        ]
        phases: dict[str, dict[str, list[dict[str, Any]]]] = {
            t[0]: {"saturated": [], "paced": []} for t in targets
        }
        for rnd in range(args.rounds):
            order = targets if rnd % 2 == 0 else list(reversed(targets))
            for name, client, node, n in order:
                proc = name if name.startswith("passthrough") else "worker"
                proc += "_b" if name.endswith("_b") else ""
                pats = all_patterns[:n]
                for kind, kw in (
                    (
                        "saturated",
                        {"rate": 0.0, "window": args.window, "duration": args.sat_seconds},
                    ),
                    ("paced", {"rate": args.rate, "duration": args.paced_seconds}),
                ):
                    r = await run_phase(
                        client,
                        meter,
                        node,
                        wl,
                        pats,
                        proc,
                        tag=f"{node}-r{rnd}{kind[0]}-",
                        sessions=args.sessions,
                        drain_timeout=args.drain_timeout,
                        **kw,
                    )
                    rig.check_alive()
                    r["trimmed_records"] = await rig.trim()
                    r["round"] = rnd
                    phases[name][kind].append(r)
                    lat = r["latency_ms"]
                    print(
                        f"round {rnd} {name:<12} {kind:<9} {r['throughput']:8.1f} rec/s  "
                        f"p50 {lat['p50']:8.1f}  p95 {lat['p95']:8.1f}  p99 {lat['p99']:8.1f} ms"
                        f"  missing {r['missing']}  load {r['machine']['loadavg_1m']}",
                        file=sys.stderr,
                    )
    summary = {
        name: {kind: pooled(ps) for kind, ps in kinds.items()} for name, kinds in phases.items()
    }
    base = summary["passthrough"]["saturated"]["throughput"]
    for name in summary:
        sat = summary[name]["saturated"]
        sat["ratio_to_passthrough"] = round(sat["throughput"] / base, 4) if base else None
        rounds = [
            round(a["throughput"] / b["throughput"], 4)
            for a, b in zip(
                phases[name]["saturated"], phases["passthrough"]["saturated"], strict=True
            )
            if b["throughput"]
        ]
        sat["ratio_to_passthrough_per_round"] = rounds
        if name.startswith("kato_"):
            sat["goal_half_passthrough_met"] = bool(base) and sat["throughput"] >= base / 2
            if "passthrough_payload" in summary:
                pbase = summary["passthrough_payload"]["saturated"]["throughput"]
                sat["ratio_to_payload_passthrough"] = (
                    round(sat["throughput"] / pbase, 4) if pbase else None
                )
    for kinds in phases.values():
        for ps in kinds.values():
            for p in ps:
                p.pop("samples_ms", None)
    out["summary"] = summary
    out["phases"] = phases
    out["rss_bytes_end"] = {k: proc_rss_bytes(p) for k, p in rig.pids().items()}
    return out


def kato_label(name: str, compare_env: list[str]) -> str:
    """``kato_<n>`` / ``kato_<n>_b`` (worker B, ``--compare-env``) as a table label."""
    n = int(name.split("_")[1])
    if name.endswith("_b"):
        return f"kato worker B ({', '.join(compare_env)}), {n:,} patterns"
    return f"kato worker, {n:,} patterns"


def markdown(report: dict[str, Any]) -> str:
    """Ready-to-paste tables for benchmarks/README.md."""
    r = report["results"]
    m = report["machine"]
    kato_env = report["config"].get("kato_env") or []
    compare_env = report["config"].get("compare_env") or []
    lines = [
        f"Run {m['date']}, `{report['git_head'][:12]}`, {m['cpus']} CPUs, Python {m['python']}; "
        f"load average {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end"
        + (f"; kato worker with {', '.join(kato_env)}." if kato_env else "."),
        "",
        "| target | saturated rec/s | vs pass-through (per round) | CPU ms/record: agent process"
        " / broker | paced "
        f"{report['config']['rate']:g}/s p50 | p95 | p99 | agent time p50 | output record bytes "
        "| predictions/observe |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, kinds in r["summary"].items():
        sat, pac = kinds["saturated"], kinds["paced"]
        label = {
            "passthrough": "pass-through Faust agent",
            "passthrough_payload": "pass-through, kato-sized output records",
        }.get(name) or kato_label(name, compare_env)
        ratio = sat["ratio_to_passthrough"]
        rounds = ", ".join(f"{x:.3f}" for x in sat["ratio_to_passthrough_per_round"])
        preds = pac["observe_predictions_mean"]
        eng = pac["processing_ms_p50"]
        sat_phases = r["phases"][name]["saturated"]
        received = sum(p["received"] for p in sat_phases) or 1
        broker = 1000 * sum(p["machine"]["cpu_s"].get("broker", 0) for p in sat_phases) / received
        size = sum(p["record_bytes"]["mean"] for p in sat_phases) / len(sat_phases)
        engine = sum(eng) / len(eng) if eng else 0.0
        lines.append(
            f"| {label} | {sat['throughput']:,.1f} | {ratio:.3f} ({rounds}) | "
            f"{sat['process_cpu_ms_per_record']:.2f} / {broker:.2f} | {pac['latency_ms']['p50']:.1f} ms | "
            f"{pac['latency_ms']['p95']:.1f} ms | {pac['latency_ms']['p99']:.1f} ms | "
            f"{engine:.2f} ms | {size:,.0f} | {'-' if preds is None else f'{preds:.1f}'} |"
        )
    lines += ["", "| preload | patterns/s | seconds | commands |", "|---|---:|---:|---:|"]
    for n, p in r["preload"].items():
        lines.append(
            f"| {int(n.split('_')[0]):,} patterns{' (worker B)' if n.endswith('_b') else ''} "
            f"({p['mode']}, {p['learned']:,} learned) | "
            f"{p['patterns_per_s']:,.0f} | {p['seconds']:.1f} | {p['commands']:,} |"
        )
    goals = [
        f"{kato_label(k, compare_env)}: {'met' if v['saturated']['goal_half_passthrough_met'] else 'NOT met'}"
        f" ({v['saturated']['ratio_to_passthrough']:.3f} of pass-through)"
        for k, v in r["summary"].items()
        if k.startswith("kato_")
    ]
    lines += ["", "Goal (at least half the pass-through rate): " + "; ".join(goals) + "."]
    vs_payload = [
        f"{kato_label(k, compare_env)}: {v['saturated']['ratio_to_payload_passthrough']:.3f}"
        for k, v in r["summary"].items()
        if k.startswith("kato_") and v["saturated"].get("ratio_to_payload_passthrough")
    ]
    if vs_payload:
        lines += [
            "",
            "Against the pass-through with kato-sized records: " + "; ".join(vs_payload) + ".",
        ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    mach = machine()
    if not args.client_spin:
        # The measuring clients fetch as kato-stream's own clients do (the gateway, `kato-stream
        # loadgen`): a pause after an empty fetch, ended by the client's own command (each
        # LoadClient links its input topic to its output topic).  Without it, noida-db
        # answering empty fetches at once, the four clients' consumers spun at ~0.75 of a core
        # (py-spy: all in aiokafka's fetch routine), beside the targets on 2 cores.
        from kato_stream import fetch_backoff

        s = Settings()
        fetch_backoff.install_from(s)
    rig = Rig(
        tmp,
        partitions=args.partitions,
        passthrough=True,
        pt_payload=args.pt_payload,
        output_retention_ms=args.output_retention_ms,
        compression=args.compression,
        trim_outputs=not args.keep_outputs,
        worker_env=dict(kv.split("=", 1) for kv in args.kato_env),
        compare_env=dict(kv.split("=", 1) for kv in args.compare_env) if args.compare_env else None,
    )
    try:
        await rig.start()
        result = await bench(args, rig)
    finally:
        await rig.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    mach["loadavg_end"] = list(os.getloadavg())
    return {
        "benchmark": "stream",
        "command": " ".join([".venv/bin/python", "benchmarks/bench_stream.py", *sys.argv[1:]]),
        "git_head": mach["git_head"],
        "machine": mach,
        "config": {
            k: getattr(args, k)
            for k in (
                "sizes",
                "partitions",
                "sessions",
                "window",
                "rate",
                "sat_seconds",
                "paced_seconds",
                "rounds",
                "seed",
                "pt_payload",
                "output_retention_ms",
                "compression",
                "kato_env",
                "compare_env",
                "client_spin",
                "keep_outputs",
            )
        },  # fmt: skip
        "results": result,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("mode", nargs="?", default="bench", choices=("bench", "passthrough"))
    p.add_argument("--sizes", default="1000,10000", help="knowledge-base sizes (patterns)")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument(
        "--output-retention-ms",
        type=int,
        default=30_000,
        help="retention.ms of every target's output topic (0 = the topic's own): noida-db "
        "rewrites all it stores as one JSON file, so kept output slows every later phase",
    )
    p.add_argument(
        "--keep-outputs",
        action="store_true",
        help="do not trim the input and output topics between phases (runs before "
        "2026-12-03, session 12: the broker rewrote every earlier phase's records through "
        "the later phases)",
    )
    p.add_argument(
        "--pt-payload",
        type=int,
        default=150_000,
        help="padding bytes of the second pass-through's records (0 = no second one)",
    )
    p.add_argument(
        "--compression",
        default="none",
        choices=("none", "gzip", "lz4", "snappy", "zstd"),
        help="producer compression of every target (KATO_STREAM_PRODUCER_COMPRESSION)",
    )
    p.add_argument(
        "--kato-env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="a setting of the kato worker (repeatable), e.g. MAX_PREDICTIONS=5",
    )
    p.add_argument(
        "--compare-env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="also run worker B, the kato worker with these settings on (repeatable): its own "
        "group, topics and nodes, the same commands, side by side in the same rounds",
    )
    p.add_argument("--window", type=int, default=50, help="in-flight cap when saturating")
    p.add_argument("--rate", type=float, default=3.0, help="paced phase msgs/s (all targets)")
    p.add_argument("--sat-seconds", type=float, default=10.0)
    p.add_argument("--paced-seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument(
        "--settle-timeout",
        type=float,
        default=180.0,
        help="most seconds to wait after the preload for the workers to go idle (persisting)",
    )
    p.add_argument("--preload-timeout", type=float, default=600.0)
    p.add_argument(
        "--preload-mode", default="autolearn", choices=("autolearn", "sequence", "observe")
    )
    p.add_argument(
        "--preload-batch", type=int, default=100, help="patterns per command (autolearn)"
    )
    p.add_argument(
        "--client-spin",
        action="store_true",
        help="measuring clients re-fetch at once after an empty fetch (before 2026-12-03)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    p.add_argument("--out", type=Path)
    p.add_argument("--render", type=Path, help="only print the tables of an existing result file")
    return p


def main() -> None:
    args = build_parser().parse_args()
    if args.mode == "passthrough":
        run_passthrough(Settings.from_env())
        return
    if args.render:
        print(markdown(json.loads(args.render.read_text())))
        return
    report = asyncio.run(main_async(args))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
