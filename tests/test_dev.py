"""``kato-stream dev``: the README's main command, run for real on the embedded default."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

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


def test_dev_streams_the_sample(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KATO_STREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port()}",
        "KATO_STREAM_REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0",
        "KATO_STREAM_WEB_PORT": str(_free_port()),
    }
    argv = [sys.executable, "-m", "kato_stream.cli", "dev", "--exit-after-sample"]
    argv += ["--port", str(_free_port()), "--data-dir", str(tmp_path / "data")]
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
