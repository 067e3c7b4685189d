"""The two ways to run the gateway, over real sockets: standalone and inside a worker."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kato_stream.embedded import free_port
from kato_stream.settings import Settings
from kato_stream.topics import create_topics, topic_specs
from tests.gateway.conformance import CONFORMANCE, replay
from tests.gateway.conftest import REPO

SCENARIO = CONFORMANCE / "s01_basic_three_events.json"


def _spawn(argv: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as fh:
        return subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT
        )


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while "gateway ready on" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gateway not ready: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def standalone(gw_settings: Settings, worker: object, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "gateway.log"
    proc = _spawn(
        [sys.executable, "-m", "kato_stream.cli", "gateway", "--port", str(port)], gw_settings, log
    )
    try:
        _wait_ready(proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture
def in_worker(embedded_stack: object, tmp_path: Path) -> Iterator[str]:
    token = "gi" + uuid.uuid4().hex[:8]
    s = dataclasses.replace(
        embedded_stack.settings(Settings()),  # type: ignore[attr-defined]
        topic_prefix=token,
        app_id=f"kato-stream-{token}",
        partitions=2,
        data_dir=str(tmp_path / "data"),
        web_port=0,  # no metrics port: the suite runs beside a `./run.sh dev` on 6066
    )
    asyncio.run(create_topics(s.kafka_bootstrap, topic_specs(s)))
    port = free_port()
    log = tmp_path / "worker.log"
    proc = _spawn([sys.executable, "-m", "tests.gateway.inproc_worker", str(port)], s, log)
    try:
        _wait_ready(proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


async def _check(base: str, mode: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        health = (await http.get("/health")).json()
        assert health["status"] == "healthy", health
        result = await replay(http, SCENARIO)
        stm = (await http.get("/distributed-stm/stats")).json()
    assert result.steps == 12 and not result.diffs, result.diffs
    if mode == "in_worker":  # the worker's own share of the session table
        local = stm["local_worker"]
        assert local["table"] == "sessions" and local["active_partitions"] == [0, 1], local
        assert isinstance(local["sessions_in_table"], int)
    else:
        assert stm["local_worker"] is None


@pytest.mark.parametrize("mode", ["standalone", "in_worker"])
def test_conformance_over_a_socket(mode: str, request: pytest.FixtureRequest) -> None:
    asyncio.run(_check(request.getfixturevalue(mode), mode))
