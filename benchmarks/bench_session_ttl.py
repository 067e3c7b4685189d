"""Session TTL memory: open N short-lived sessions on a worker, and see whether the worker's
RSS, its session table and Redis go back to their baseline once the sessions expire.

    python benchmarks/bench_session_ttl.py --sessions 100000 --ttl 5 --rounds 2 \
        --out benchmarks/results/session_ttl.json

(the recorded run: ``--sessions 40000 --removal-timeout 1200``, because a sweep of 100,000
took far too long here; benchmarks/README.md says why.)

One run starts its own embedded stack (noida-db broker, redis-server) and ONE real worker
(``python -m kato_stream.cli worker``, settings from ``Settings.to_env()``): persistence on
(latest records and session lists in Redis, chdb and Qdrant local mode under the run's
temporary directory), ``memory://`` table store, ``--partitions`` input partitions,
``KATO_STREAM_SESSION_EXPIRY_GRACE_SECONDS=0``, ``KATO_STREAM_SESSION_SWEEP_SECONDS=1``.

1. **seed**: a session of the benchmark's node learns one pattern (``a b | c``), so that
   every later ``observe ["a"]`` predicts (its predictions and future potentials go to
   Redis as the session's lists, as in production); the seed session has the same short
   TTL and is removed before the baseline.
2. **baseline**: once the worker is idle (``--settle`` s): the worker's RSS
   (``/proc/<pid>/status`` VmRSS), its ``kato_session_table_entries`` and
   ``kato_sessions_live``, Redis ``INFO memory`` ``used_memory`` and ``DBSIZE`` (and the
   keys per kind by SCAN), and the broker's and redis-server's RSS for reference.
3. **round** (``--rounds`` times, new session ids each round): ``--sessions`` ``open``
   commands with ``ttl_seconds`` = ``--ttl``, each followed by one ``observe``; the
   benchmark waits until all 2N outputs are on ``<prefix>.predictions`` (its end offsets)
   and samples (**loaded**); then nobody publishes, and it waits until
   ``kato_sessions_live`` is 0, the table is back at its baseline size and the sweeps'
   expirations counter has grown by N (**table removal**), then until Redis ``DBSIZE`` is
   back at its baseline (**Redis removal**, the latest records are deleted off the command
   path), lets the worker settle and samples again (**removed**).  During the round it
   polls every 2 s for the peaks.  Then (unless ``--no-poke``) one more short session runs
   and is removed, and a last sample shows what the next table write releases.

Record timestamps (``--timestamps``): ``burst`` (default) stamps every record of a round
with the round's start time, as if the N sessions were opened within the same moment: the
log's clock then stands still while the worker works through the backlog, so all N
sessions are live at the end of the load (the worst case for memory), and their removal
starts when the idle partitions get the worker's ticks.  ``live`` keeps the producer's
clock at publish time: sessions already expire during the load (stream time passes them
while the worker catches up), so the table never holds all N at once.

Removal is decided by stream time and the committed offsets, not by the benchmark: the
figures are the product's.  CPython seldom returns freed memory to the OS, so RSS after a
removal is compared with RSS after the previous round's removal (is the memory reused?)
rather than with the baseline.  ``--inspect`` starts the worker through this file's
``_worker`` shim (the same ``kato_stream.cli`` main, plus a thread that, on request,
counts the heap's objects by type after a full collection, follows ``--referrers`` types to
what holds them, and with ``--tracemalloc N`` also writes the top allocation sites): to find
what holds memory if RSS grows round over round.  The shim unfreezes and refreezes the gc
(the agent's ``gc.freeze()`` hides older objects from ``gc.get_referrers``), so its runs are
for diagnosis, not for the RSS figures.  The worker's log is searched for warnings and
errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHIM_REQUEST = "inspect.request"


# -- the optional worker shim (runs in the worker process) --------------------------------
def _worker_shim() -> int:
    """``kato_stream.cli worker`` plus a thread that answers heap-inspection requests: when
    ``<dir>/inspect.request`` appears (its text: a label), it runs a full collection,
    counts the gc-tracked objects by type and, if tracemalloc runs, takes the top
    allocation sites by line, and writes ``<dir>/inspect-<label>.json``."""
    import gc
    import threading
    import tracemalloc
    from collections import Counter

    frames = int(os.environ.get("BENCH_TTL_TRACEMALLOC", "0"))
    if frames:
        tracemalloc.start(frames)
    where = Path(os.environ["BENCH_TTL_INSPECT_DIR"])

    def describe(o: Any) -> str:
        name = type(o).__qualname__
        if name == "frame":
            code = o.f_code
            return f"frame {code.co_qualname} {code.co_filename}:{o.f_lineno}"
        if isinstance(o, dict):
            return f"dict({len(o)}) keys {[str(k)[:40] for k in list(o)[:6]]}"
        if isinstance(o, list | tuple | set | frozenset):
            return f"{name}({len(o)})"
        return f"{type(o).__module__}.{name}"

    def stacks_holding(obj: Any) -> list[str]:
        """The frames of the threads' current stacks with ``obj`` among their locals."""
        out = []
        for ident, top in sys._current_frames().items():  # noqa: SLF001
            f = top
            while f is not None:
                if any(v is obj for v in f.f_locals.values()):
                    code = f.f_code
                    out.append(f"thread {ident} {code.co_qualname} {code.co_filename}:{f.f_lineno}")
                f = f.f_back
        return out

    def chain(type_name: str, depth: int = 10) -> list[list[str]]:
        """Who holds an object of ``type_name``: each level's referrers (first 6), following
        one that is not a frame, nor a coroutine if there is another (a frame: a local variable of code that has not
        returned)."""
        objs = gc.get_objects()
        cur = next((o for o in objs if type(o).__qualname__ == type_name), None)
        del objs
        if cur is None:
            return []
        out, seen, mine = [], {id(cur)}, []
        for _ in range(depth):
            got = gc.get_referrers(cur)
            mine.append(got)
            skip = {id(x) for x in mine} | seen
            refs = [r for r in got if id(r) not in skip]
            mine.append(refs)
            if not refs:  # not held by a gc-tracked object: a running thread's locals?
                out.append(stacks_holding(cur) or [f"refcount {sys.getrefcount(cur) - 2}"])
                break
            out.append([describe(r) for r in refs[:6]])
            # follow a container or an object first: a coroutine holding one of them in a
            # local (the producer's current message, say) is seldom what keeps the many
            objects = sorted(
                (r for r in refs if type(r).__name__ != "frame"),
                key=lambda r: type(r).__name__ in ("coroutine", "Task", "method"),
            )
            if not objects:  # held by running code's locals: the frames say where
                break
            mine.append(objects)
            cur = objects[0]
            seen.add(id(cur))
        return out

    def answer(label: str) -> None:
        # The agent's gc.freeze() hides the objects alive at its start from get_objects and
        # get_referrers: unfreeze to see them all, freeze again after (what is alive now).
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        try:
            gc.collect()
            counts = Counter(type(o).__qualname__ for o in gc.get_objects())
            doc: dict[str, Any] = {
                "label": label,
                "gc_objects": sum(counts.values()),
                "gc_frozen_before": frozen,
                "types": dict(counts.most_common(40)),
            }
            wanted = [t for t in os.environ.get("BENCH_TTL_REFERRERS", "").split(",") if t]
            if wanted:
                doc["referrers"] = {t: chain(t) for t in wanted if counts.get(t)}
        finally:
            gc.freeze()
        if tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            stats = snap.statistics("lineno")
            doc["traced_mb"] = round(sum(s.size for s in stats) / 2**20, 2)
            doc["top_lines"] = [
                {"where": str(s.traceback), "kb": round(s.size / 1024, 1), "count": s.count}
                for s in stats[:40]
            ]
        tmp = where / f".inspect-{label}.json"
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.rename(where / f"inspect-{label}.json")

    def loop() -> None:
        req = where / SHIM_REQUEST
        while True:
            time.sleep(0.5)
            if req.exists():
                label = req.read_text().strip() or "x"
                req.unlink()
                try:
                    answer(label)
                except Exception as exc:  # noqa: BLE001 (report, keep the worker alive)
                    (where / f"inspect-{label}.json").write_text(json.dumps({"error": repr(exc)}))

    threading.Thread(target=loop, name="bench-inspect", daemon=True).start()
    from kato_stream.cli import main

    return main(["worker", "--loglevel", "info"])


if __name__ == "__main__" and sys.argv[1:2] == ["_worker"]:
    sys.exit(_worker_shim())


import httpx  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from kato_stream.embedded import EmbeddedStack, free_port  # noqa: E402
from kato_stream.settings import Settings  # noqa: E402
from kato_stream.stream import codecs  # noqa: E402
from kato_stream.topics import create_topics, topic_specs  # noqa: E402

NODE = "ttlnode"
WARN = re.compile(r"\[(WARNING|ERROR|CRITICAL)\]|Traceback|Crashed reason=")
MB = 2**20


# -- processes ----------------------------------------------------------------------------
class Worker:
    """The worker subprocess (``kato_stream.cli worker``, or the shim with ``--inspect``)."""

    def __init__(
        self, s: Settings, log: Path, inspect_dir: Path | None, frames: int, referrers: str
    ) -> None:
        Path(s.data_dir).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **s.to_env(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        if inspect_dir is not None:
            inspect_dir.mkdir(parents=True, exist_ok=True)
            env["BENCH_TTL_INSPECT_DIR"] = str(inspect_dir)
            env["BENCH_TTL_TRACEMALLOC"] = str(frames)
            env["BENCH_TTL_REFERRERS"] = referrers
            argv = [sys.executable, str(Path(__file__).resolve()), "_worker"]
        else:
            argv = [sys.executable, "-m", "kato_stream.cli", "worker", "--loglevel", "info"]
        self.log = log
        self.inspect_dir = inspect_dir
        self._fh = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv, cwd=s.data_dir, env=env, stdout=self._fh, stderr=subprocess.STDOUT
        )

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_bytes()[-3000:].decode("utf-8", "replace")
            raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()

    async def inspect(self, label: str, timeout: float = 300) -> dict[str, Any] | None:
        """The shim's heap report (None without ``--inspect``)."""
        if self.inspect_dir is None:
            return None
        out = self.inspect_dir / f"inspect-{label}.json"
        (self.inspect_dir / SHIM_REQUEST).write_text(label)
        deadline = time.monotonic() + timeout
        while not out.exists():
            self.check()
            if time.monotonic() > deadline:
                return {"error": "no answer from the shim"}
            await asyncio.sleep(0.5)
        doc: dict[str, Any] = json.loads(out.read_text())
        return doc


def status_kb(pid: int | None, field: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM, RssAnon, ...)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


# -- Kafka, metrics, Redis ----------------------------------------------------------------
def envelope(op: str, sid: str, payload: dict[str, Any]) -> bytes:
    return codecs.dumps({"op": op, "session_id": sid, "node_id": NODE, "payload": payload})


async def publish(
    producer: AIOKafkaProducer, topic: str, items: list[tuple[bytes, bytes]], ts: int | None
) -> None:
    """Publish in order (per key order kept: one producer, sends queued in order)."""
    futs = [await producer.send(topic, v, key=k, timestamp_ms=ts) for k, v in items]
    await asyncio.gather(*futs)


class Offsets:
    """End offsets of a topic, summed over its partitions (one consumer for the run)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self._c: AIOKafkaConsumer | None = None

    async def total(self) -> int:
        if self._c is None:
            self._c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
            await self._c.start()
        parts = self._c.partitions_for_topic(self.topic)
        if not parts:
            await self._c._client.force_metadata_update()  # noqa: SLF001
            parts = self._c.partitions_for_topic(self.topic) or set()
        ends = await self._c.end_offsets([TopicPartition(self.topic, p) for p in parts])
        return sum(ends.values())

    async def close(self) -> None:
        if self._c is not None:
            await self._c.stop()


async def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"http://127.0.0.1:{port}/metrics")
    r.raise_for_status()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }


def val(sc: dict[Any, float], name: str, **labels: str) -> float | None:
    return sc.get((name, frozenset(labels.items())))


def commands(sc: dict[Any, float]) -> dict[str, int]:
    """kato_commands_total by ``op/status``."""
    out: dict[str, int] = {}
    for (name, labels), v in sc.items():
        if name == "kato_commands_total":
            d = dict(labels)
            out[f"{d.get('op')}/{d.get('status')}"] = int(v)
    return dict(sorted(out.items()))


async def redis_keys(r: aioredis.Redis, app_id: str) -> dict[str, int]:
    """Keys by kind (one SCAN): latest records, session lists, everything else."""
    kinds = {"latest": 0, "session_lists": 0, "other": 0}
    lists_prefix = f"kato-stream:{app_id}:session:".encode()
    async for key in r.scan_iter(count=10_000):
        if key.startswith(b"kato-stream:session:") and key.endswith(b":latest"):
            kinds["latest"] += 1
        elif key.startswith(lists_prefix):
            kinds["session_lists"] += 1
        else:
            kinds["other"] += 1
    return kinds


# -- the run ------------------------------------------------------------------------------
@dataclasses.dataclass
class Ctx:
    s: Settings
    stack: EmbeddedStack
    worker: Worker
    redis: aioredis.Redis
    outputs: Offsets
    args: argparse.Namespace


async def sample(ctx: Ctx, phase: str, keys: bool = True) -> dict[str, Any]:
    """The worker's RSS and metrics, Redis memory and keys (the metrics are None if the
    worker's web server does not answer within 30 s: its event loop is blocked)."""
    try:
        sc = await scrape(ctx.s.web_port)
        unanswered = None
    except (httpx.HTTPError, OSError) as exc:
        sc, unanswered = {}, repr(exc)
    zero = None if unanswered else 0.0
    info = await ctx.redis.info("memory")
    pid = ctx.worker.proc.pid
    out: dict[str, Any] = {
        "phase": phase,
        "t": round(time.time(), 1),
        "worker_rss_mb": mb(status_kb(pid, "VmRSS")),
        "worker_rss_anon_mb": mb(status_kb(pid, "RssAnon")),
        "worker_hwm_mb": mb(status_kb(pid, "VmHWM")),
        "table_entries": val(sc, "kato_session_table_entries"),
        "sessions_live": val(sc, "kato_sessions_live"),
        "expirations_sweep": val(sc, "kato_session_expirations_total", how="sweep") or zero,
        "expirations_command": val(sc, "kato_session_expirations_total", how="command") or zero,
        "ticks": val(sc, "kato_session_ticks_total"),
        "commands": commands(sc),
        "redis_used_memory_mb": round(info["used_memory"] / MB, 2),
        "redis_rss_mb": round(info["used_memory_rss"] / MB, 1),
        "redis_dbsize": await ctx.redis.dbsize(),
        "broker_rss_mb": mb(status_kb(ctx.stack.processes[0].pid, "VmRSS")),
        "outputs_total": await ctx.outputs.total(),
        "metrics_unanswered": unanswered,
    }
    if keys:
        out["redis_keys"] = await redis_keys(ctx.redis, ctx.s.app_id)
    heap = await ctx.worker.inspect(phase)
    if heap is not None:
        out["heap"] = heap
    print(
        f"[{phase}] rss {out['worker_rss_mb']} MB, table {out['table_entries']}, live "
        f"{out['sessions_live']}, redis {out['redis_used_memory_mb']} MB / {out['redis_dbsize']}"
        f" keys, expired {out['expirations_sweep']}+{out['expirations_command']}, "
        f"ticks {out['ticks']}" + (f" (metrics: {unanswered})" if unanswered else ""),
        flush=True,
    )
    return out


async def wait_for(what: str, check: Any, timeout: float, ctx: Ctx, every: float = 1.0) -> float:
    """Seconds until ``await check()`` is true (RuntimeError after ``timeout``)."""
    t0 = time.monotonic()
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError):
            if await check():
                return time.monotonic() - t0
        ctx.worker.check()
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)


async def swept(ctx: Ctx) -> float:
    sc = await scrape(ctx.s.web_port)
    return val(sc, "kato_session_expirations_total", how="sweep") or 0.0


async def table_empty(ctx: Ctx, entries: float, swept_at_least: float) -> bool:
    """No live session, the table at ``entries``, and the sweeps' expirations counter at
    ``swept_at_least`` (the gauges are only set by a sweep: 0 before the first one)."""
    sc = await scrape(ctx.s.web_port)
    live = val(sc, "kato_sessions_live")
    table = val(sc, "kato_session_table_entries")
    done = val(sc, "kato_session_expirations_total", how="sweep") or 0.0
    return live == 0 and table is not None and table <= entries and done >= swept_at_least


async def one_session(
    ctx: Ctx, producer: AIOKafkaProducer, sid: str, commands: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """A session with the short TTL runs ``commands``; wait until it is removed again."""
    k = sid.encode()
    items = [(k, envelope("open", sid, {"ttl_seconds": ctx.args.ttl}))]
    items += [(k, envelope(op, sid, payload)) for op, payload in commands]
    before, expired = await ctx.outputs.total(), await swept(ctx)
    await publish(producer, ctx.s.topic("observations"), items, None)

    async def answered() -> bool:
        return await ctx.outputs.total() - before >= len(items)

    await wait_for(f"the outputs of {sid}", answered, 120, ctx)
    took = await wait_for(
        f"the removal of {sid}", lambda: table_empty(ctx, 0, expired + 1), 120 + ctx.args.ttl, ctx
    )
    return {"session": sid, "commands": len(items), "removed_after_s": round(took, 1)}


async def seed(ctx: Ctx, producer: AIOKafkaProducer) -> dict[str, Any]:
    """One session learns ``a b | c`` on the node (every later ``observe ["a"]`` predicts)."""
    learn = [
        ("observe", {"strings": ["a", "b"]}),
        ("observe", {"strings": ["c"]}),
        ("learn", {}),
    ]
    return await one_session(ctx, producer, "seed", learn)


def round_items(r: int, n: int, ttl: int) -> list[tuple[bytes, bytes]]:
    items = []
    for i in range(n):
        sid = f"r{r}-{i:06d}"
        k = sid.encode()
        items.append((k, envelope("open", sid, {"ttl_seconds": ttl})))
        items.append((k, envelope("observe", sid, {"strings": ["a"]})))
    return items


async def one_round(
    ctx: Ctx, producer: AIOKafkaProducer, r: int, base: dict[str, Any], rec: dict[str, Any]
) -> None:
    """One round, its figures into ``rec`` as they come (kept if a later step fails)."""
    args = ctx.args
    items = round_items(r, args.sessions, args.ttl)
    want = len(items)
    start_outputs, expired = await ctx.outputs.total(), await swept(ctx)
    ts = int(time.time() * 1000) if args.timestamps == "burst" else None
    t0 = time.monotonic()
    pub = asyncio.create_task(publish(producer, ctx.s.topic("observations"), items, ts))
    del items
    peak = {"worker_rss_mb": 0.0, "table_entries": 0.0, "sessions_live": 0.0}
    published_s = None
    last_print = t0
    while True:
        if pub.done() and published_s is None:
            pub.result()
            published_s = round(time.monotonic() - t0, 1)
        ctx.worker.check()
        done = await ctx.outputs.total() - start_outputs
        with contextlib.suppress(httpx.HTTPError, OSError):
            sc = await scrape(ctx.s.web_port)
            for key, name in (("table_entries", "kato_session_table_entries"),
                              ("sessions_live", "kato_sessions_live")):  # fmt: skip
                peak[key] = max(peak[key], val(sc, name) or 0.0)
        rss = mb(status_kb(ctx.worker.proc.pid, "VmRSS")) or 0.0
        peak["worker_rss_mb"] = max(peak["worker_rss_mb"], rss)
        now = time.monotonic()
        if now - last_print >= 30:
            last_print = now
            print(
                f"  round {r + 1}: {done}/{want} outputs after {now - t0:.0f} s "
                f"({done / (now - t0):.0f}/s), rss {rss} MB, table {peak['table_entries']:.0f} "
                "peak",
                flush=True,
            )
        if done >= want and published_s is not None:
            break
        if now - t0 > args.load_timeout:
            raise RuntimeError(f"round {r + 1}: {done}/{want} outputs after {now - t0:.0f} s")
        await asyncio.sleep(2)
    t_loaded = time.monotonic()
    load_s = t_loaded - t0
    rec.update(
        sessions=args.sessions,
        commands=want,
        publish_s=published_s,
        load_s=round(load_s, 1),
        commands_per_s=round(want / load_s, 1),
        peak_during_load=peak,
    )
    rec["loaded"] = await sample(ctx, f"round{r + 1}_loaded", keys=True)
    # removal times count from the moment the last output was seen (the loaded sample, taken
    # meanwhile, is read first from the metrics, then from a SCAN of Redis)
    await wait_for(
        "the table back at its baseline",
        lambda: table_empty(ctx, base["table_entries"], expired + args.sessions),
        args.removal_timeout,
        ctx,
        every=0.5,
    )
    table_s = time.monotonic() - t_loaded
    rec["table_removal_s"] = round(table_s, 1)

    async def redis_back() -> bool:
        return await ctx.redis.dbsize() <= base["redis_dbsize"]

    await wait_for("Redis back at its baseline DBSIZE", redis_back, 120, ctx, 0.5)
    rec["redis_removal_s"] = round(time.monotonic() - t_loaded, 1)
    await asyncio.sleep(args.settle)
    rec["removed"] = await sample(ctx, f"round{r + 1}_removed", keys=True)
    rec["poked"] = None
    if args.poke:  # one more short session: its first table write prunes what the last
        # sweep's tombstones left in the table's list of changelog futures (app.py)
        poke = await one_session(ctx, producer, f"poke{r + 1}", [("observe", {"strings": ["a"]})])
        await wait_for("Redis back at its baseline DBSIZE", redis_back, 120, ctx, 0.5)
        await asyncio.sleep(args.settle)
        rec["poked"] = {**poke, **await sample(ctx, f"round{r + 1}_poked", keys=True)}


def log_findings(log: Path) -> dict[str, Any]:
    text = log.read_text(errors="replace")
    lines = text.splitlines()
    bad = [ln for ln in lines if WARN.search(ln)]
    removed = [int(m.group(1)) for m in re.finditer(r"removed (\d+) expired sessions", text)]
    distinct: dict[str, int] = {}
    for ln in bad:
        key = re.sub(r"^\[[^\]]*\]\s*", "", ln)[:200]
        key = re.sub(r"\d+(\.\d+)?", "N", key)
        distinct[key] = distinct.get(key, 0) + 1
    return {
        "warnings_and_errors": len(bad),
        "distinct": dict(sorted(distinct.items(), key=lambda kv: -kv[1])[:30]),
        "first": bad[:20],
        "sweeps_that_removed": len(removed),
        "sessions_removed_per_sweep": {
            "max": max(removed) if removed else 0,
            "sum": sum(removed),
            "first_10": removed[:10],
        },
    }


def git_state() -> dict[str, Any]:
    def run(*argv: str) -> str:
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {
        "rev": run("git", "rev-parse", "--short=12", "HEAD"),
        "uncommitted": [
            line.strip()
            for line in run("git", "status", "--short", "--untracked-files=no").splitlines()
        ],
    }


def summary(base: dict[str, Any], rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per phase: what the README table shows."""
    rows: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [("baseline", base, None)]
    for rd in rounds:
        n = rd["round"]
        for key, name in (
            ("peak_during_load", "peak during the load"),
            ("loaded", "loaded"),
            ("removed", "removed"),
            ("poked", "after one more short session"),
            ("at_error", f"when it gave up ({rd.get('error')})"),
        ):
            if rd.get(key):
                rows.append((f"round {n} {name}", rd[key], rd if key == "removed" else None))
    fields = (
        "worker_rss_mb",
        "table_entries",
        "sessions_live",
        "redis_used_memory_mb",
        "redis_dbsize",
        "expirations_sweep",
        "expirations_command",
        "ticks",
    )
    out = []
    for name, smp, rd in rows:
        row: dict[str, Any] = {"phase": name, **{f: smp.get(f) for f in fields}}
        row["table_removal_s"] = rd["table_removal_s"] if rd else None
        row["redis_removal_s"] = rd["redis_removal_s"] if rd else None
        out.append(row)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ttl-"))
    stack = EmbeddedStack(tmp / "stack", timeout=60)
    await stack.start()
    token = uuid.uuid4().hex[:6]
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    s = dataclasses.replace(
        stack.settings(Settings()),
        topic_prefix=f"ttl{token}",
        app_id=f"kato-stream-ttl{token}",
        data_dir=str(tmp / "worker"),
        web_port=free_port(),
        partitions=args.partitions,
        persist=True,
        clickhouse_url=f"chdb://{tmp / 'chdb'}",
        qdrant_url=f"file://{tmp / 'qdrant'}",
        session_expiry=True,
        session_expiry_grace=0.0,
        session_sweep_seconds=args.sweep,
    )
    (tmp / "qdrant").mkdir()
    specs = topic_specs(s)
    if args.output_retention_ms:
        specs = [
            dataclasses.replace(
                t, configs={**t.configs, "retention.ms": str(args.output_retention_ms)}
            )
            if t.name == s.topic("predictions")
            else t
            for t in specs
        ]
    await create_topics(s.kafka_bootstrap, specs)
    log = tmp / "worker.log"
    worker = Worker(
        s, log, tmp / "inspect" if args.inspect else None, args.tracemalloc, args.referrers
    )
    r = aioredis.from_url(s.redis_url)
    ctx = Ctx(s, stack, worker, r, Offsets(s.kafka_bootstrap, s.topic("predictions")), args)
    producer = AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap, linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    rounds: list[dict[str, Any]] = []
    error = None
    try:

        async def ready() -> bool:
            async with httpx.AsyncClient(timeout=5) as c:
                return (await c.get(f"http://127.0.0.1:{s.web_port}/ready")).status_code == 200

        ready_s = await wait_for("the worker ready", ready, 180, ctx)
        print(f"worker ready after {ready_s:.1f} s; seeding", flush=True)
        seeded = await seed(ctx, producer)
        await asyncio.sleep(args.settle)
        base = await sample(ctx, "baseline")
        for n in range(args.rounds):
            rec: dict[str, Any] = {"round": n + 1}
            rounds.append(rec)
            try:
                await one_round(ctx, producer, n, base, rec)
            except RuntimeError as exc:  # recorded: what was measured so far stands
                error = f"round {n + 1}: {exc}"
                print(error, flush=True)
                rec["error"] = str(exc)
                with contextlib.suppress(Exception):
                    rec["at_error"] = await sample(ctx, f"round{n + 1}_error")
                break
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        with contextlib.suppress(Exception):
            await ctx.outputs.close()
        with contextlib.suppress(Exception):
            await r.aclose()
        worker.stop()
        findings = log_findings(log)
        changelog = None
        with contextlib.suppress(Exception):
            cl = Offsets(s.kafka_bootstrap, f"{s.app_id}-sessions-changelog")
            changelog = await cl.total()
            await cl.close()
        await stack.stop()
        if args.keep:
            print(f"kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    done = [rd for rd in rounds if "error" not in rd]
    return {
        "benchmark": "session_ttl",
        "command": " ".join(["python", "benchmarks/bench_session_ttl.py", *sys.argv[1:]]),
        "started": started,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "git": git_state(),
        },
        "settings": {
            "sessions": args.sessions,
            "ttl_seconds": args.ttl,
            "rounds": args.rounds,
            "timestamps": args.timestamps,
            "partitions": args.partitions,
            "session_sweep_seconds": args.sweep,
            "session_expiry_grace_seconds": 0.0,
            "persist": True,
            "table_store": s.table_store,
            "commit_interval": s.commit_interval,
            "predictions_retention_ms": args.output_retention_ms,
            "poke": args.poke,
            "inspect": args.inspect,
            "tracemalloc_frames": args.tracemalloc,
            "referrers": args.referrers,
        },
        "seed": seeded if "seeded" in locals() else None,
        "baseline": base if "base" in locals() else None,
        "rounds": rounds,
        "summary": summary(base, rounds) if "base" in locals() else [],
        "rss_after_removal_mb": [rd["removed"]["worker_rss_mb"] for rd in done],
        "changelog_records": changelog,
        "worker_log": findings,
        "error": error,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sessions", type=int, default=100_000, help="sessions opened per round")
    p.add_argument("--ttl", type=int, default=5, help="ttl_seconds of each session")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--timestamps", choices=("burst", "live"), default="burst")
    p.add_argument("--partitions", type=int, default=Settings().partitions)
    p.add_argument("--sweep", type=float, default=1.0, help="KATO_STREAM_SESSION_SWEEP_SECONDS")
    p.add_argument("--settle", type=float, default=15.0, help="idle seconds before a sample")
    p.add_argument("--load-timeout", type=float, default=3600.0, help="seconds for a load")
    p.add_argument(
        "--removal-timeout", type=float, default=600.0, help="seconds for a table removal"
    )
    p.add_argument(
        "--output-retention-ms",
        type=int,
        default=60_000,
        help="retention.ms of the predictions topic (noida-db holds every record in RAM)",
    )
    p.add_argument(
        "--no-poke",
        dest="poke",
        action="store_false",
        help="skip the one-session phase after each removal",
    )
    p.add_argument("--inspect", action="store_true", help="heap counts by type at each sample")
    p.add_argument("--tracemalloc", type=int, default=0, help="with --inspect: frames to trace")
    p.add_argument(
        "--referrers",
        default="",
        metavar="TYPE,...",
        help="with --inspect: who holds an object of each of these types (gc referrer chain)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    print(json.dumps(report["summary"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
