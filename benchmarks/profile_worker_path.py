"""cProfile of the worker's per-command path in one process (``bench_worker_cpu.py``'s
processor and commands), sorted by own time: where an observe's CPU goes by function.

cProfile adds a cost to every Python call, so read shares of the C kernel's calls (each one
call per observe) against the total, not absolute times.

    .venv/bin/python benchmarks/profile_worker_path.py 10000 \\
        > benchmarks/results/profiles/worker_path_10000_cprofile.txt
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import bench_worker_cpu as b  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    args = argparse.Namespace(patterns=n, block=500, rounds=1, gc_threshold=20000)
    proc, cmds = b.setup(args)
    runner = b.Runner(proc, 20000, b.encode_shared)
    runner.run(cmds[:100])  # warm: the index is built, the caches filled
    spent = runner.run(cmds)
    print("cpu ms/cmd", 1000 * spent / len(cmds))
    prof = cProfile.Profile()
    prof.enable()
    runner.run(cmds)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
