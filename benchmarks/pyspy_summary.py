"""Busy-sample shares of a py-spy profile in collapsed form (``py-spy record -f raw``).

    .venv/bin/python benchmarks/pyspy_summary.py \\
        benchmarks/results/profiles/worker_saturated_1000_86b46f3.collapsed --thread MainThread

Samples whose innermost frame is a wait (the selector, a thread pool's queue) are idle and
left out; the rest of the chosen thread's samples are 100 %.  Prints each function's
inclusive share (the samples with it anywhere on the stack) and its own share (innermost).
How the committed profiles were taken: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

IDLE = ("EpollSelector.select", "_worker (concurrent", "wait (threading", "select (selectors")


def frame_key(frame: str) -> str:
    """``function (file)``: the line number dropped, the path cut to its file name."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name


def summarize(path: Path, thread: str) -> tuple[int, Counter[str], Counter[str]]:
    """(busy samples of ``thread``, inclusive counts, innermost counts)."""
    total, inclusive, own = 0, Counter[str](), Counter[str]()
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        if thread not in frames[0] or frames[-1].startswith(IDLE):
            continue
        count = int(n)
        total += count
        own[frame_key(frames[-1])] += count
        for key in {frame_key(f) for f in frames[1:]}:
            inclusive[key] += count
    return total, inclusive, own


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("profile", type=Path)
    p.add_argument("--thread", default="", help="only stacks of threads whose name has this")
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args()
    total, inclusive, own = summarize(args.profile, args.thread)
    print(f"busy samples: {total}")
    for title, counts in (("inclusive", inclusive), ("own", own)):
        print(f"--- {title}")
        for key, n in counts.most_common(args.top):
            print(f"{n / max(total, 1) * 100:5.1f}% {key}")


if __name__ == "__main__":
    main()
