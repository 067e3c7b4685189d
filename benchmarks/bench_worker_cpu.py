"""A worker's CPU per command outside the broker: GC threshold and list encoding, A/B.

The end-to-end benchmark (bench_stream.py) is CPU-bound on the worker; this one measures the
worker's own per-command path in one process, without Kafka or Redis I/O, so that two
choices can be compared side by side on a noisy host:

* ``gc``: the cyclic GC's young-generation threshold, Python's 700 against the worker's
  ``KATO_STREAM_GC_THRESHOLD`` default (20,000; stream/app.py ``tune_gc``);
* ``encoding``: the output record and the session's new lists (session_lists.py) encoded
  apart, as before (``codecs.dumps`` of the record, ``orjson.dumps`` of each list), against
  ``codecs.dumps_sharing`` (each list once, spliced into the record);
* ``--edges``: the worker's edge checks (the changelog-size limit and the window of applied
  command ids) against none;
* ``--kernel-json``: the predictions as dicts encoded by orjson (before) against the C
  kernel's own JSON (``MatcherOptions(encoded=True)``, the worker's path now), both at the
  worker's GC threshold with ``dumps_sharing``;
* ``--baseline REV``: the worker's path (kernel JSON, shared encoding) at git revision REV
  against the working tree's, each tree in its own process (REV exported by ``git
  archive``, its C kernel compiled), block by block in turn on the same commands; the two
  must encode byte-identical outputs (a SHA-256 per block), or the run fails.

Per command: the Processor with the real engine (``external_lists`` on, as a worker runs
it), then the encoding.  The knowledge base (``--patterns``, loadgen's Workload) is learned
through the Processor and is not frozen (a worker learns it from the stream after its own
``gc.freeze()``); the commands are loadgen's 8 sessions replaying patterns with noise and a
``clear_stm`` after each.  Every variant has its own session table and gets the same
commands; the variants run block by block in turn (``--block`` commands each, ``--rounds``
rounds), so the host's drift hits them alike, and every block starts after a full
collection, so none pays for the garbage the one before left.  CPU is ``time.process_time``.

    .venv/bin/python benchmarks/bench_worker_cpu.py --out benchmarks/results/worker_cpu.json
    .venv/bin/python benchmarks/bench_worker_cpu.py --baseline HEAD --rounds 10
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "--serve-tree" in sys.argv:  # a --baseline server: that tree's kato_stream, not ours
    sys.path.insert(0, sys.argv[sys.argv.index("--serve-tree") + 1])

import kato_stream  # noqa: E402
from benchmarks._common import export_revision, git_state, machine  # noqa: E402
from kato_stream.core.predictions import PredictionResult, PredictParams, predict  # noqa: E402
from kato_stream.settings import Settings  # noqa: E402
from kato_stream.stream import codecs  # noqa: E402
from kato_stream.stream.engine_adapter import CoreEngineAdapter  # noqa: E402
from kato_stream.stream.ltm import LtmRegistry  # noqa: E402
from kato_stream.stream.processor import Outcome, Processor, Source  # noqa: E402
from kato_stream.tools.loadgen import Workload  # noqa: E402

PYTHON_GC = 700


class NoEdges(Processor):
    """The processor without the edge checks of the faults-and-limits work: no changelog
    size check (the state encoded once more per command) and no id window (``--edges``)."""

    def state_size(self, session_id: str, table_value: dict[str, Any]) -> int:
        return 0


Command = tuple[str, bytes]


Encoded = tuple[bytes, dict[str, bytes]]


def encode_apart(o: Outcome) -> Encoded:
    """The encoding before dumps_sharing: the record, then each list on its own."""
    lists = {name: codecs.dumps(items) for name, (_, items) in (o.observed or {}).items()}
    return codecs.dumps(o.record), lists


def encode_shared(o: Outcome) -> Encoded:
    lists = {name: items for name, (_, items) in (o.observed or {}).items()}
    return codecs.dumps_sharing(o.record, lists)


class Runner:
    """One variant: its own session table and stored lists, the node's shared LTM.

    The lists are kept as their JSON bytes and parsed when a command reads them, as a
    worker keeps them in Redis: held as objects they would put every session's predictions
    in the heap that the GC walks, which a worker's heap does not hold."""

    def __init__(self, proc: Processor, gc_threshold: int, encode: Any) -> None:
        self.proc, self.gc_threshold, self.encode = proc, gc_threshold, encode
        self.table: dict[str, Any] = {}
        self.lists: dict[tuple[str, str], bytes] = {}
        self.offset = 0
        self.cpu = 0.0
        self.commands = 0
        self.bytes = 0

    def run(self, commands: list[Command], keep: list[Encoded] | None = None) -> float:
        """Run ``commands``; their CPU seconds (also added to ``cpu``).  With ``keep``, the
        encoded outputs are appended to it (compared by ``--baseline``, after the clock)."""
        gc.set_threshold(self.gc_threshold, 10, 10)
        gc.collect()  # no variant pays for the young objects the previous one left
        t0 = time.process_time()
        for sid, value in commands:
            o = self.one(sid, value)
            record, lists = self.encode(o)
            self.bytes += len(record) + sum(map(len, lists.values()))
            for name, raw in lists.items():
                self.lists[(sid, name)] = raw
            if keep is not None:
                keep.append((record, lists))
        spent = time.process_time() - t0
        self.cpu += spent
        self.commands += len(commands)
        return spent

    def one(self, sid: str, value: bytes) -> Outcome:
        key, src = sid.encode(), Source("in", 0, self.offset)
        self.offset += 1
        o = self.proc.process(key, value, src, self.table.get)
        if o.needs:
            loaded = {name: orjson.loads(self.lists.get((sid, name), b"[]")) for name in o.needs}
            o = self.proc.process(key, value, src, self.table.get, loaded=loaded)
        if o.table_value is not None:
            self.table[sid] = o.table_value
        return o


def dict_predict(kb: Any, stm: Any, params: PredictParams) -> PredictionResult:
    """The predictor before the kernel wrote JSON: the process's matcher, dicts out."""
    return predict(kb, stm, params)


def envelope(op: str, sid: str, payload: dict[str, Any]) -> bytes:
    return codecs.dumps({"op": op, "session_id": sid, "node_id": "n", "payload": payload})


def gc_variants(proc: Processor, threshold: int) -> dict[str, Runner]:
    """Python's GC threshold and the worker's, each with the two encodings."""
    return {
        f"gc {PYTHON_GC}, encoded apart": Runner(proc, PYTHON_GC, encode_apart),
        f"gc {PYTHON_GC}, shared": Runner(proc, PYTHON_GC, encode_shared),
        f"gc {threshold}, encoded apart": Runner(proc, threshold, encode_apart),
        f"gc {threshold}, shared": Runner(proc, threshold, encode_shared),
    }


def emit(
    report: dict[str, Any],
    rows: dict[str, dict[str, Any]],
    heads: tuple[str, str],
    out: Path | None,
) -> None:
    """Print ``rows`` as a markdown table (``heads``: the name column's and the ratio
    column's titles) and write ``report`` to ``out``."""
    ratio = "vs_baseline" if heads[1] == "vs baseline" else "vs_first"
    print(f"| {heads[0]} | CPU ms/command | {heads[1]} | bytes encoded/command |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['cpu_ms_per_command']} | {row[ratio]} | "
            f"{row['bytes_encoded_per_command']:,} |"
        )
    if out:
        out.write_text(json.dumps(report, indent=1) + "\n")


def setup(args: argparse.Namespace) -> tuple[Processor, list[Command]]:
    """The worker's processor with ``--patterns`` learned, and the measured commands."""
    proc = Processor(
        CoreEngineAdapter.from_settings(Settings()),
        LtmRegistry(),
        max_bytes=1 << 30,
        external_lists=True,
    )
    wl = Workload()
    patterns = wl.patterns(args.patterns)
    loader = Runner(proc, args.gc_threshold, lambda o: (b"", {}))
    for pat in patterns:
        loader.run([("load", envelope("observe", "load", {"strings": ev})) for ev in pat])
        loader.run([("load", envelope("learn", "load", {}))])
    streams = [wl.observations(patterns, i) for i in range(8)]
    commands: list[Command] = []
    for i in range(args.block * args.rounds):
        sid = f"s{i % 8}"
        ev = next(streams[i % 8])
        op, payload = ("clear_stm", {}) if ev is None else ("observe", {"strings": ev})
        commands.append((sid, envelope(op, sid, payload)))
    return proc, commands


def digest(outputs: list[Encoded]) -> str:
    """SHA-256 of a block's encoded records and lists, in order."""
    h = hashlib.sha256()
    for record, lists in outputs:
        h.update(len(record).to_bytes(8, "little") + record)
        for name in sorted(lists):
            h.update(name.encode() + b"=" + len(lists[name]).to_bytes(8, "little"))
            h.update(lists[name])
    return h.hexdigest()


def serve(args: argparse.Namespace, cmd_in: IO[str], out: IO[str]) -> None:
    """One side of ``--baseline``: the worker's path (kernel JSON, shared encoding, the GC
    threshold of ``--gc-threshold``) on the code of ``--serve-tree``.  Says which
    ``kato_stream`` it runs, then runs block ``r`` for each line ``r`` it reads and
    answers with the block's CPU seconds and output digest."""
    proc, commands = setup(args)
    runner = Runner(proc, args.gc_threshold, encode_shared)
    out.write(json.dumps({"ready": kato_stream.__file__}) + "\n")
    out.flush()
    for line in cmd_in:
        r = int(line)
        kept: list[Encoded] = []
        cpu = runner.run(commands[r * args.block : (r + 1) * args.block], kept)
        out.write(json.dumps({"cpu": cpu, "digest": digest(kept), "bytes": runner.bytes}) + "\n")
        out.flush()


class Server:
    """A ``serve`` subprocess measuring one tree."""

    def __init__(self, tree: Path, argv: list[str]) -> None:
        self.tree = tree
        env = dict(os.environ, PYTHONPATH=str(tree))
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--serve-tree", str(tree)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        ready = self.answer()["ready"]
        if not Path(ready).resolve().is_relative_to(tree.resolve()):
            raise RuntimeError(f"server for {tree} imported kato_stream from {ready}")
        self.cpu = 0.0
        self.digests: list[str] = []

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server for {self.tree} exited ({self.proc.wait()})")
        got: dict[str, Any] = json.loads(line)
        return got

    def block(self, r: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{r}\n")
        self.proc.stdin.flush()
        got = self.answer()
        self.cpu += got["cpu"]
        self.digests.append(got["digest"])
        self.bytes = got["bytes"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def compare_with_baseline(args: argparse.Namespace) -> None:
    """``--baseline REV``: the working tree's worker path against REV's, side by side."""
    argv = [
        f"--patterns={args.patterns}",
        f"--block={args.block}",
        f"--rounds={args.rounds}",
        f"--gc-threshold={args.gc_threshold}",
    ]
    with tempfile.TemporaryDirectory(prefix="kato-baseline-") as tmp:
        export_revision(args.baseline, Path(tmp))
        sides = {f"baseline {args.baseline}": Server(Path(tmp), argv)}
        sides["working tree"] = Server(ROOT, argv)
        try:
            for r in range(args.rounds):
                order = list(sides.values())
                for side in order if r % 2 == 0 else reversed(order):
                    side.block(r)
        finally:
            for side in sides.values():
                side.close()
    base, now = sides.values()
    commands = args.block * args.rounds
    identical = base.digests == now.digests
    rows = {
        name: {
            "cpu_ms_per_command": round(1000 * side.cpu / commands, 3),
            "vs_baseline": round(side.cpu / base.cpu, 3),
            "bytes_encoded_per_command": side.bytes // commands,
        }
        for name, side in sides.items()
    }
    report = {
        "benchmark": "worker_cpu",
        "command": " ".join([".venv/bin/python", "benchmarks/bench_worker_cpu.py", *sys.argv[1:]]),
        "machine": machine(**git_state()),
        "config": vars(args) | {"out": str(args.out) if args.out else None},
        "results": {
            "commands_per_variant": commands,
            "identical_output": identical,
            "variants": rows,
        },
    }
    print(f"{commands} commands per side, {args.patterns} patterns; outputs identical: {identical}")
    emit(report, rows, ("side", "vs baseline"), args.out)
    if not identical:
        sys.exit("the two trees' outputs differ: not a like-for-like comparison")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patterns", type=int, default=1000)
    p.add_argument("--block", type=int, default=100, help="commands per variant per turn")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--gc-threshold", type=int, default=Settings().gc_threshold)
    p.add_argument(
        "--edges",
        action="store_true",
        help="compare the worker's edge checks (state-size limit, id window of "
        "KATO_STREAM_IDEMPOTENCY_WINDOW) with none, instead of the GC/encoding variants",
    )
    p.add_argument(
        "--kernel-json",
        action="store_true",
        help="compare the predictions built as dicts and encoded by orjson with the kernel's "
        "own JSON (the worker's path), instead of the GC/encoding variants",
    )
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="compare the worker's path at git revision REV (exported by git archive, its C "
        "kernel compiled) with the working tree's: two processes, block by block in turn, "
        "with the same commands; their outputs must be byte-identical",
    )
    p.add_argument("--serve-tree", help=argparse.SUPPRESS)  # a --baseline server's tree
    args = p.parse_args()
    if args.serve_tree is not None:
        serve(args, sys.stdin, sys.stdout)
        return
    if args.baseline:
        compare_with_baseline(args)
        return

    proc, commands = setup(args)
    if args.edges:
        s = Settings()
        checked = Processor.from_settings(proc.engine, proc.ltm, s, external_lists=True)
        bare = NoEdges(proc.engine, proc.ltm, max_bytes=1 << 30, external_lists=True)
        variants = {
            "no edge checks": Runner(bare, args.gc_threshold, encode_shared),
            f"edge checks (window {s.idempotency_window})": Runner(
                checked, args.gc_threshold, encode_shared
            ),
        }
    elif args.kernel_json:
        dicts = Processor(
            CoreEngineAdapter.from_settings(Settings(), predictor=dict_predict),
            proc.ltm,
            max_bytes=1 << 30,
            external_lists=True,
        )
        variants = {
            "predictions as dicts, orjson (before)": Runner(
                dicts, args.gc_threshold, encode_shared
            ),
            "kernel JSON (now)": Runner(proc, args.gc_threshold, encode_shared),
        }
    else:
        variants = gc_variants(proc, args.gc_threshold)
    for r in range(args.rounds):
        block = commands[r * args.block : (r + 1) * args.block]
        order = list(variants.values())
        for v in order if r % 2 == 0 else reversed(order):
            v.run(block)
    gc.set_threshold(PYTHON_GC, 10, 10)

    base = next(iter(variants.values()))
    rows = {
        name: {
            "cpu_ms_per_command": round(1000 * v.cpu / v.commands, 3),
            "vs_first": round(v.cpu / base.cpu, 3),
            "bytes_encoded_per_command": v.bytes // v.commands,
        }
        for name, v in variants.items()
    }
    report = {
        "benchmark": "worker_cpu",
        "command": " ".join([".venv/bin/python", "benchmarks/bench_worker_cpu.py", *sys.argv[1:]]),
        "machine": machine(**git_state()),
        "config": vars(args) | {"out": str(args.out) if args.out else None},
        "results": {"commands_per_variant": base.commands, "variants": rows},
    }
    print(f"{base.commands} commands per variant, {args.patterns} patterns")
    emit(report, rows, ("variant", "vs first"), args.out)


if __name__ == "__main__":
    main()
