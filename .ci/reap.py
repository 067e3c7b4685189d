"""Run a command and, when it ends, stop every process it left behind, and only those.

This process makes itself the child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): every
process the command starts, however deep and even if it started a session of its own, is
reparented to this one when its parent exits instead of to init.  So after the command
ends, the processes still below this one are exactly the command's leftovers (a worker, a
broker, a redis-server a test did not stop): they get SIGTERM, then SIGKILL, by pid.  No
process is looked up by name, so a developer's own `./run.sh dev` beside the tests is left
alone.  Exit status: the command's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc), children before grandchildren."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def stop_all(grace: float = 10.0) -> None:
    me = os.getpid()
    for pid in descendants(me):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap()
        if not descendants(me):
            return
        time.sleep(0.2)
    for pid in descendants(me):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    reap()


def cmdline(pid: int) -> str:
    """The process's command line (its first 160 characters), or "?" when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160] or "?"


def exited(pid: int) -> bool:
    """Whether ``pid`` has exited and only waits to be collected (a zombie), or is gone.

    Orphans that exited after their parent are reparented here as zombies: collected, not
    leftovers."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].startswith(("Z", "X"))


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("reap: cannot become the child subreaper; leftovers are not stopped", file=sys.stderr)
    proc = subprocess.Popen(sys.argv[1:])
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        code = proc.wait()
    reap()  # orphans that already exited
    left = [pid for pid in descendants(os.getpid()) if not exited(pid)]
    if left:
        print(f"reap: stopping {len(left)} process(es) the command left running", file=sys.stderr)
        for pid in left:  # which ones: a leftover is a test or a command that did not clean up
            print(f"reap:   {pid} {cmdline(pid)}", file=sys.stderr)
    stop_all()
    return code


if __name__ == "__main__":
    sys.exit(main())
