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
  worker's GC threshold with ``dumps_sharing``.

Per command: the Processor with the real engine (``external_lists`` on, as a worker runs
it), then the encoding.  The knowledge base (``--patterns``, loadgen's Workload) is learned
through the Processor and is not frozen (a worker learns it from the stream after its own
``gc.freeze()``); the commands are loadgen's 8 sessions replaying patterns with noise and a
``clear_stm`` after each.  Every variant has its own session table and gets the same
commands; the variants run block by block in turn (``--block`` commands each, ``--rounds``
rounds), so the host's drift hits them alike, and every block starts after a full
collection, so none pays for the garbage the one before left.  CPU is ``time.process_time``.

    .venv/bin/python benchmarks/bench_worker_cpu.py --out benchmarks/results/worker_cpu.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stream import machine  # noqa: E402

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

    def run(self, commands: list[Command]) -> None:
        gc.set_threshold(self.gc_threshold, 10, 10)
        gc.collect()  # no variant pays for the young objects the previous one left
        t0 = time.process_time()
        for sid, value in commands:
            o = self.one(sid, value)
            record, lists = self.encode(o)
            self.bytes += len(record) + sum(map(len, lists.values()))
            for name, raw in lists.items():
                self.lists[(sid, name)] = raw
        self.cpu += time.process_time() - t0
        self.commands += len(commands)

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
    args = p.parse_args()

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
        "machine": machine(),
        "config": vars(args) | {"out": str(args.out) if args.out else None},
        "results": {"commands_per_variant": base.commands, "variants": rows},
    }
    print(f"{base.commands} commands per variant, {args.patterns} patterns")
    print("| variant | CPU ms/command | vs first | bytes encoded/command |")
    print("|---|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['cpu_ms_per_command']} | {r['vs_first']} | "
            f"{r['bytes_encoded_per_command']:,} |"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
