""".ci/reap.py: CI stops exactly what the tests left running, by pid, and nothing else (a
developer's own processes beside the suite survive)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from kato_stream import procstat

ROOT = Path(__file__).resolve().parents[1]


def test_reap_stops_the_commands_leftovers_only(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])  # not started by the command
    pidfile = tmp_path / "leaked"
    script = (
        "import subprocess, sys\n"
        "p = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"  # escapes its group
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "sys.exit(3)\n"
    )
    try:
        r = subprocess.run(
            [sys.executable, str(ROOT / ".ci" / "reap.py"), sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 3  # the command's status
        leaked = int(pidfile.read_text())
        deadline = time.monotonic() + 10
        while procstat.running(leaked) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not procstat.running(leaked), "the command's leftover is still running"
        assert "stopping 1 process" in r.stderr
        assert procstat.running(bystander.pid), "a process the command did not start was stopped"
    finally:
        bystander.kill()
        bystander.wait(5)
    assert os.path.exists(ROOT / ".ci" / "run")


def test_reap_collects_orphans_that_exited_without_calling_them_leftovers() -> None:
    """A child that exited after its parent ends up here as a zombie: collected silently."""
    script = (
        "import subprocess, time\n"
        "subprocess.Popen(['true'])\n"  # exits at once; never waited for by its parent
        "time.sleep(0.5)\n"
    )
    r = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "reap.py"), sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    assert "stopping" not in r.stderr, r.stderr
