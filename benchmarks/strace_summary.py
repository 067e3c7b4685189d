"""Where a process's ``sendto`` calls went, from ``strace -f -T -e trace=sendto`` output.

    .venv/bin/python benchmarks/strace_summary.py \\
        benchmarks/results/profiles/worker_saturated_1000_sendto_bb12dea.strace

One row per (thread, socket): calls, seconds inside the calls (``-T``), the median call in
microseconds and the median size in bytes; then the total.  How the committed trace was
taken: benchmarks/README.md ("2026-12-03 (later)").
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path

CALL = re.compile(r"^(\d+) sendto\((\d+),.*= (\d+) <([\d.]+)>")


def summarize(path: Path) -> dict[tuple[str, str], tuple[int, float, float, int]]:
    """(thread, fd) -> (calls, seconds, median microseconds, median bytes)."""
    calls: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        m = CALL.match(line)
        if m:
            calls[(m.group(1), m.group(2))].append((int(m.group(3)), float(m.group(4))))
    return {
        key: (
            len(v),
            sum(t for _, t in v),
            1e6 * statistics.median_low(t for _, t in v),
            statistics.median_low(n for n, _ in v),
        )
        for key, v in calls.items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trace", type=Path)
    args = p.parse_args()
    rows = summarize(args.trace)
    print("| thread | fd | calls | seconds | median us | median bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    for (tid, fd), (n, secs, med_us, med_b) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
        print(f"| {tid} | {fd} | {n} | {secs:.3f} | {med_us:.0f} | {med_b} |")
    total = sum(r[1] for r in rows.values())
    print(f"total: {sum(r[0] for r in rows.values())} calls, {total:.3f} s")


if __name__ == "__main__":
    main()
