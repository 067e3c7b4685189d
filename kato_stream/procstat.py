"""A process's ``/proc/<pid>/stat`` line (Linux), read one way for every caller.

The second field is the command name in parentheses, which may itself hold spaces and
parentheses: the fields that follow are split after its *last* ``)``.  Index 0 of
:func:`stat_fields` is field 3 of proc(5) (the state), so field ``n`` is at ``n - 3``.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat``, or None if there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has: only its parent has
    not reaped it yet)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def start_ticks(pid: int) -> int | None:
    """The start time of a running ``pid`` in clock ticks since boot (field 22), else None.
    With the pid it names one process: a pid can be reused, its start time not."""
    fields = stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (fields 14 and 15), None if it is gone."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> set[int]:
    """Direct children of ``pid``: the children of each of its threads (empty if it is gone)."""
    out: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out |= {int(x) for x in (task / "children").read_text().split()}
    except OSError:
        pass
    return out
