"""Producer compression on kato's output records: size ratio and CPU per record per codec.

Builds one node's knowledge base in process (the Processor and the real engine, as a worker
runs them; ``--patterns`` patterns of bench_core's workload, seed 7 as bench_stream), encodes
the output records of ``--records`` observes at the default settings (100 predictions), and
compresses each with every codec aiokafka offers, the way aiokafka does (gzip at its level 9,
the others through cramjam).  Reported per codec: bytes in / bytes out, and CPU ms per record
(``time.process_time``, best of ``--repeat``), both to compress and to decompress.  What
``KATO_STREAM_PRODUCER_COMPRESSION`` costs a worker and saves the broker (docs/tuning.md).

    .venv/bin/python benchmarks/bench_compression.py --out benchmarks/results/compression.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import codec

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core  # noqa: E402
from bench_stream import machine  # noqa: E402

from kato_stream.settings import Settings  # noqa: E402
from kato_stream.stream import codecs  # noqa: E402
from kato_stream.stream.engine_adapter import CoreEngineAdapter  # noqa: E402
from kato_stream.stream.ltm import LtmRegistry  # noqa: E402
from kato_stream.stream.processor import Processor, Source  # noqa: E402

CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip": (codec.gzip_encode, codec.gzip_decode),
    "lz4": (codec.lz4_encode, codec.lz4_decode),
    "snappy": (codec.snappy_encode, codec.snappy_decode),
    "zstd": (codec.zstd_encode, codec.zstd_decode),
}


def output_records(patterns: int, records: int, seed: int) -> list[bytes]:
    """Encoded output records of ``records`` observes on a ``patterns``-pattern node."""
    s = Settings()
    proc = Processor(CoreEngineAdapter.from_settings(s), LtmRegistry(), max_bytes=1 << 30)
    table: dict[str, Any] = {}
    offset = 0

    def run(op: str, payload: dict[str, Any]) -> Any:
        nonlocal offset
        env = {"op": op, "session_id": "s", "node_id": "n", "payload": payload}
        out = proc.process(b"s", codecs.dumps(env), Source("t", 0, offset), table.get)
        offset += 1
        if out.table_value is not None:
            table["s"] = out.table_value
        return out

    rng = random.Random(seed)
    stored = bench_core.make_patterns(rng, patterns)
    for p in stored:
        for ev in p:
            run("observe", {"strings": ev})
        run("learn", {})
    out: list[bytes] = []
    while len(out) < records:
        for ev in bench_core.make_query(rng, rng.choice(stored)):
            out.append(codecs.dumps(run("observe", {"strings": ev}).record))
        run("clear_stm", {})
    return out[:records]


def cpu_ms(fn: Callable[[bytes], bytes], items: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for b in items:
            fn(b)
        best = min(best, time.process_time() - t0)
    return round(1000 * best / len(items), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patterns", type=int, default=1000)
    p.add_argument("--records", type=int, default=40)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    recs = output_records(args.patterns, args.records, args.seed)
    raw = sum(map(len, recs))
    rows: dict[str, Any] = {}
    for name, (enc, dec) in CODECS.items():
        packed = [enc(r) for r in recs]
        assert [dec(b) for b in packed] == recs, name  # round trip
        rows[name] = {
            "ratio": round(raw / sum(map(len, packed)), 2),
            "mean_bytes_out": sum(map(len, packed)) // len(packed),
            "compress_ms_per_record": cpu_ms(enc, recs, args.repeat),
            "decompress_ms_per_record": cpu_ms(dec, packed, args.repeat),
        }
    report = {
        "benchmark": "compression",
        "command": " ".join([".venv/bin/python", "benchmarks/bench_compression.py", *sys.argv[1:]]),
        "machine": machine(),
        "config": vars(args) | {"out": str(args.out) if args.out else None},
        "results": {"records": len(recs), "mean_bytes_in": raw // len(recs), "codecs": rows},
    }
    print(f"{len(recs)} output records, mean {raw // len(recs):,} bytes")
    print("| codec | ratio | bytes out | compress ms/record | decompress ms/record |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['ratio']} | {r['mean_bytes_out']:,} | "
            f"{r['compress_ms_per_record']} | {r['decompress_ms_per_record']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
