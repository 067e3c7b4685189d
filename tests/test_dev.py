"""``kato-stream dev``: the README's main command, run for real on the embedded default."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kato_stream import procstat
from kato_stream.dev import describe, sample_envelopes
from kato_stream.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_settings_env_round_trips() -> None:
    s = Settings.from_env({"KATO_STREAM_FILTER_PIPELINE": "length,jaccard", "SORT_SYMBOLS": "0"})
    assert s.filter_pipeline == ("length", "jaccard") and s.sort_symbols is False
    assert Settings.from_env(s.to_env()) == s


def test_sample_is_keyed_and_ordered() -> None:
    envs = sample_envelopes("n", "s")
    assert {e["session_id"] for e in envs} == {"s"}
    assert [e["msg_id"] for e in envs] == [f"dev-{i}" for i in range(len(envs))]
    assert sum(e["op"] == "learn" for e in envs) == 4


def test_describe_rejected_record() -> None:
    line = describe({"op": "observe", "status": "rejected", "error": {"code": "X", "message": "m"}})
    assert "REJECTED X: m" in line


def _dev(tmp_path: Path, flag: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment of ``kato-stream dev`` on free ports and its own data dir."""
    env = {
        **os.environ,
        "KATO_STREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port()}",
        "KATO_STREAM_REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0",
        "KATO_STREAM_WEB_PORT": str(_free_port()),
    }
    argv = [sys.executable, "-m", "kato_stream.cli", "dev", flag]
    argv += ["--port", str(_free_port()), "--data-dir", str(tmp_path / "data")]
    return argv, env


def test_dev_streams_the_sample(tmp_path: Path) -> None:
    argv, env = _dev(tmp_path, "--exit-after-sample")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=400)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    n = len(sample_envelopes("n", "s"))
    assert f"sample: {n}/{n} commands answered" in out
    assert "gateway    http://127.0.0.1:" in out
    # the worker's Prometheus endpoint counted exactly the commands the sample sent
    assert f"kato_commands_total={n}" in out
    # the last probe ([wake],[shower]) predicts the learned wake/run/shower/work sequence
    assert "future=[['work']]" in out


def _start_dev(tmp_path: Path) -> tuple[subprocess.Popen[str], set[int]]:
    """``kato-stream dev --no-sample`` up to "ready", and its child processes."""
    argv, env = _dev(tmp_path, "--no-sample")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("ready:"):
            break
    assert lines and lines[-1].startswith("ready:"), "".join(lines)
    kids = procstat.children(proc.pid)
    assert len(kids) >= 3, kids  # broker, worker, gateway (and redis-server if installed)
    return proc, kids


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(procstat.running(p) for p in pids):
        time.sleep(0.2)
    return {p for p in pids if procstat.running(p)}


def test_dev_stops_everything_on_sigterm(tmp_path: Path) -> None:
    """A supervisor's SIGTERM stops the stack like Ctrl-C: children stopped, exit 0."""
    proc, kids = _start_dev(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert _wait_gone(kids, 30) == set()


def test_dev_children_die_with_it(tmp_path: Path) -> None:
    """Killed outright, dev leaves nothing running: the kernel kills its children."""
    proc, kids = _start_dev(tmp_path)
    proc.kill()
    proc.wait(10)
    assert _wait_gone(kids, 30) == set()


def test_dev_restarts_a_killed_worker(tmp_path: Path) -> None:
    """The worker dies (SIGKILL, as the OOM killer would): dev says so, starts it again, and
    the new worker answers commands (the dead one's membership is evicted by the new one's
    watchdog: the embedded broker never expires it)."""
    import asyncio
    import threading

    from kato_stream.cli import consume_records
    from kato_stream.stream import codecs
    from kato_stream.stream.agents import WORKER_HEADER

    argv, env = _dev(tmp_path, "--no-sample")
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready:"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(300), "".join(lines)
        worker = [
            p
            for p in procstat.children(proc.pid)
            if b" worker" in Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
        ]
        assert len(worker) == 1, worker
        os.kill(worker[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("worker restarted" in x for x in lines):
            time.sleep(0.2)
        text = "".join(lines)
        assert "worker exited with code -9" in text and "restarting it in" in text, text
        assert "worker restarted" in text, text

        bootstrap = env["KATO_STREAM_KAFKA_BOOTSTRAP"]

        async def ask() -> list[dict[str, object]]:
            from aiokafka import AIOKafkaProducer

            p = AIOKafkaProducer(bootstrap_servers=bootstrap)
            await p.start()
            try:
                doc = {
                    "op": "observe",
                    "session_id": "r1",
                    "node_id": "rn",
                    "msg_id": "m1",
                    "payload": {"strings": ["x"]},
                }
                await p.send_and_wait("kato.observations", codecs.dumps(doc), key=b"r1")
            finally:
                await p.stop()
            limit = time.monotonic() + Settings().session_timeout + 40
            while time.monotonic() < limit:
                recs = await consume_records(bootstrap, "kato.predictions", timeout=3, to_end=True)
                found = [r for r in recs if codecs.loads(r.value).get("msg_id") == "m1"]
                if found:
                    return [
                        {
                            "doc": codecs.loads(found[0].value),
                            "worker": dict(found[0].headers)[WORKER_HEADER],
                        }
                    ]
                await asyncio.sleep(0.5)
            return []

        got = asyncio.run(ask())
        assert got, "".join(lines)
        assert got[0]["doc"]["status"] == "ok"  # type: ignore[index]
        assert str(worker[0]).encode() not in got[0]["worker"]  # type: ignore[operator]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
