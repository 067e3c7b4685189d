"""kato_stream/procstat.py: one reading of /proc/<pid>/stat for the group watchdog, the
tests and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from kato_stream import procstat

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux /proc only")


def test_a_running_process_a_zombie_and_a_reaped_one() -> None:
    me = os.getpid()
    assert procstat.running(me)
    assert procstat.start_ticks(me) == procstat.start_ticks(me) is not None
    cpu = procstat.cpu_seconds(me)
    assert cpu is not None and cpu > 0
    # a command name with spaces and parentheses: the fields are split after its last ")"
    named = "open('/proc/self/comm', 'w').write('a) b (c'); print('named', flush=True)"
    child = subprocess.Popen(
        [sys.executable, "-c", f"import sys; {named}; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "named\n"
        with open(f"/proc/{child.pid}/stat") as fh:
            assert "(a) b (c)" in fh.read()
        fields = procstat.stat_fields(child.pid)
        assert fields is not None and fields[0] in "RSD"
        assert procstat.start_ticks(child.pid) is not None
        assert child.pid in procstat.children(me)
    finally:
        assert child.stdin is not None
        child.stdin.close()
    deadline = time.monotonic() + 10
    while procstat.running(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    # exited, not reaped yet: a zombie is not running and has no start time
    assert not procstat.running(child.pid)
    assert procstat.start_ticks(child.pid) is None
    child.wait()
    child.stdout.close()
    assert procstat.stat_fields(child.pid) is None and not procstat.running(child.pid)
    assert procstat.cpu_seconds(child.pid) is None
    assert procstat.children(child.pid) == set()
