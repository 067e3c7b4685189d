"""What the benchmarks' reports share: the command line, the machine, printing and saving.

Import as ``from benchmarks._common import ...`` after putting the repository on
``sys.path`` (every benchmark does, for ``kato_stream``)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def command(script: str) -> str:
    """How the benchmark was run: ``python benchmarks/<script> <its arguments>``."""
    return " ".join(["python", f"benchmarks/{Path(script).name}", *sys.argv[1:]])


def machine(**extra: Any) -> dict[str, Any]:
    """Python version, CPU count and platform of this host (and ``extra``)."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        **extra,
    }


def git_state() -> dict[str, Any]:
    """The checkout measured: its revision and the tracked files changed in it."""

    def run(*argv: str) -> str:
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {
        "rev": run("git", "rev-parse", "--short=12", "HEAD"),
        "uncommitted": [
            line.strip()
            for line in run("git", "status", "--short", "--untracked-files=no").splitlines()
        ],
    }


def export_revision(rev: str, workdir: Path, part: str = "kato_stream") -> Path:
    """``part`` of the tree at git revision ``rev``, exported under ``workdir`` (``git
    archive``: the working tree is not touched) with its C kernel compiled in place, so
    that ``PYTHONPATH=workdir`` (or a path import) runs that revision's code at full speed.

    Returns the exported ``kato_stream/core`` directory.  Raises when the kernel does not
    compile: a baseline on the pure-Python matcher would be ~100x slower and the comparison
    meaningless."""
    from setuptools import Distribution, Extension

    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, part], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(workdir)], input=tar, check=True)
    core = workdir / "kato_stream" / "core"
    dist = Distribution(
        {
            "name": "kato_baseline",
            "ext_modules": [
                Extension("kato_stream.core._kernel", sources=[str(core / "_kernel.c")])
            ],
        }
    )
    cmd: Any = dist.get_command_obj("build_ext")
    cmd.build_lib = str(workdir)
    cmd.build_temp = str(workdir / "build")
    cmd.ensure_finalized()
    cmd.run()
    if not list(core.glob("_kernel*.so")):
        raise RuntimeError(f"baseline {rev}: the C kernel did not compile")
    return core


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Print ``report`` as JSON and, with ``out``, write it there (directories created)."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


async def trim_topics(bootstrap: str, topics: list[str]) -> int:
    """Delete every record of ``topics`` up to their current ends (Kafka's DeleteRecords, as
    ``kafka-delete-records.sh`` does); returns how many records went.

    Why the benchmarks need it: noida-db, the embedded broker, keeps all it stores in one
    JSON file (each record byte as a decimal number, about 4 bytes per byte) and rewrites
    the file after writes, so its CPU grows with what it holds.  A topic's ``retention.ms``
    did not bound that in the benchmark (measured: a pass-through's 4,000 output records of
    150 KB, ``retention.ms`` 30 s, were still held 2.5 minutes after their phase, 3 GB of
    JSON, and the broker spent ~0.9 of a core rewriting them through every later phase),
    although a bare noida-db expires them soon after their retention
    (``bench_broker_store.py``); its log does not say why.  A benchmark trims its output topics between phases so that
    each phase pays for its own records only."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.records_to_delete import RecordsToDelete

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await admin.start()
        await consumer.topics()  # metadata of every topic, not only subscribed ones
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        gone = sum(ends[tp] - starts[tp] for tp in tps)
        if gone:
            await admin.delete_records(
                {
                    tp: RecordsToDelete(before_offset=ends[tp])
                    for tp in tps
                    if ends[tp] > starts[tp]
                },
                timeout_ms=30_000,
            )
        return gone
    finally:
        await consumer.stop()
        await admin.close()
