"""Gateway fixtures on the shared embedded stack (tests/conftest.py).

``gw_settings`` (session): a private topic prefix with every topic created, and a private
data dir (chdb allows one process per directory).  ``worker`` (session): a real stream
worker process (``kato-stream worker``) on those settings.  ``gateway``/``http``: the
gateway services and an in-process HTTP client on its app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kato_stream.embedded import free_port
from kato_stream.gateway.app import create_app
from kato_stream.gateway.service import Gateway
from kato_stream.settings import Settings
from kato_stream.topics import create_topics, topic_specs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def gw_settings(embedded_stack: object, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings on the shared stack with a private topic prefix (topics created)."""
    token = "gw" + uuid.uuid4().hex[:8]
    data_dir = tmp_path_factory.mktemp("gateway-data")
    s = dataclasses.replace(
        embedded_stack.settings(Settings()),  # type: ignore[attr-defined]
        topic_prefix=token,
        app_id=f"kato-stream-{token}",
        partitions=2,
        data_dir=str(data_dir),
        web_port=free_port(),
    )
    asyncio.run(create_topics(s.kafka_bootstrap, topic_specs(s)))
    return s


@pytest.fixture(scope="session")
def worker(
    gw_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process (engine core, stores) consuming the private topics."""
    log = tmp_path_factory.mktemp("gateway-worker") / "worker.log"
    env = {**os.environ, **gw_settings.to_env(), "PYTHONPATH": str(REPO)}
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kato_stream.cli", "worker"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail(f"worker exited: {log.read_text()[-3000:]}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
async def gateway(gw_settings: Settings) -> AsyncIterator[Gateway]:
    gw = Gateway(gw_settings, request_timeout=20.0)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the gateway app in-process (ASGI)."""
    app = create_app(gateway)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as c:
        yield c
