"""The embedded broker's CPU against what it holds, and whether retention bounds it.

noida-db (the embedded Kafka broker) keeps every topic in one JSON file and rewrites it
after writes.  This measures, on a bare noida-db of its own (no worker, no client reading):

* ``held``: ``--records`` records of ``--size`` bytes written to an 8-partition topic, then
  the broker's CPU seconds over the next ``--wait`` seconds and the size of its file;
* ``deleted``: the same records deleted (``_common.trim_topics``, Kafka's DeleteRecords),
  then the broker's CPU over the next ``--wait`` seconds;
* ``retention``: the same records written to a topic with ``retention.ms`` = ``--retention-ms``,
  and how many seconds pass until the broker has expired them all (None: not within
  ``--retention-timeout``).

    .venv/bin/python benchmarks/bench_broker_store.py \\
        --out benchmarks/results/broker_store.json
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import command, emit, machine, trim_topics  # noqa: E402
from kato_stream import procstat  # noqa: E402
from kato_stream.embedded import free_port  # noqa: E402
from kato_stream.embedded.broker import noida_binary, wait_kafka  # noqa: E402

PARTITIONS = 8


def cpu(pid: int) -> float:
    return procstat.cpu_seconds(pid) or 0.0


async def produce(bootstrap: str, topic: str, records: int, size: int) -> float:
    """Write the records (acknowledged); returns the seconds it took."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=max(1_048_576, 2 * size), linger_ms=5
    )
    await producer.start()
    try:
        t0 = time.perf_counter()
        futs = [
            await producer.send(topic, b"x" * size, key=str(i).encode()) for i in range(records)
        ]
        await asyncio.gather(*futs)
        return time.perf_counter() - t0
    finally:
        await producer.stop()


async def live_records(bootstrap: str, topic: str) -> int:
    """Records between the beginning and the end of every partition of ``topic``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


async def measure(args: argparse.Namespace, pid: int, bootstrap: str, data: Path) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic("held", PARTITIONS, 1),
                NewTopic(
                    "expiring",
                    PARTITIONS,
                    1,
                    topic_configs={"retention.ms": str(args.retention_ms)},
                ),
            ]
        )
    finally:
        await admin.close()

    async def idle_cpu() -> float:
        c0 = cpu(pid)
        await asyncio.sleep(args.wait)
        return round(cpu(pid) - c0, 3)

    store = data / "kafka.json"
    out: dict[str, Any] = {"idle_empty_cpu_s": await idle_cpu()}
    out["held_write_s"] = round(await produce(bootstrap, "held", args.records, args.size), 3)
    out["held_cpu_s"] = await idle_cpu()
    out["held_file_bytes"] = store.stat().st_size if store.exists() else 0
    out["deleted_records"] = await trim_topics(bootstrap, ["held"])
    out["deleted_cpu_s"] = await idle_cpu()
    await produce(bootstrap, "expiring", args.records, args.size)
    t0 = time.monotonic()
    expired_after = None
    while time.monotonic() - t0 < args.retention_timeout:
        if await live_records(bootstrap, "expiring") == 0:
            expired_after = round(time.monotonic() - t0, 1)
            break
        await asyncio.sleep(0.5)
    out["retention_expired_after_s"] = expired_after
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-broker-store-"))
    port = free_port()
    proc = subprocess.Popen(
        [noida_binary(), "start", "--only", "kafka", "--host", "127.0.0.1",
         "--kafka-port", str(port), "--data-dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        bootstrap = f"127.0.0.1:{port}"
        await wait_kafka(bootstrap)
        result = await measure(args, proc.pid, bootstrap, tmp)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "benchmark": "broker_store",
        "command": command(__file__),
        "machine": machine(),
        "config": {
            k: getattr(args, k)
            for k in ("records", "size", "wait", "retention_ms", "retention_timeout")
        },
        "results": result,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--size", type=int, default=150_000, help="bytes per record")
    p.add_argument("--wait", type=float, default=5.0, help="seconds of each CPU measurement")
    p.add_argument("--retention-ms", type=int, default=5000)
    p.add_argument("--retention-timeout", type=float, default=60.0)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    emit(asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
