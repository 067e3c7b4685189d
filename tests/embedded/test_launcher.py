"""The embedded stack: real noida-db / redis-server processes on free ports."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from kato_stream import procstat
from kato_stream.embedded import (
    EmbeddedStack,
    EmbeddedStackError,
    free_port,
    wait_kafka,
)
from kato_stream.embedded.process import ManagedProcess
from kato_stream.embedded.redis import redis_server_binary, wait_redis
from kato_stream.settings import Settings
from kato_stream.topics import TopicError, TopicSpec, create_topics, describe_partitions

pytestmark = pytest.mark.timeout(120)


async def _roundtrip(stack: EmbeddedStack) -> None:
    prod = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await prod.start()
    try:
        await prod.send_and_wait("rt", b"v", key=b"k")
    finally:
        await prod.stop()
    cons = AIOKafkaConsumer(
        "rt", bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await cons.start()
    try:
        msg = await asyncio.wait_for(cons.getone(), 20)
        assert (msg.key, msg.value) == (b"k", b"v")
    finally:
        await cons.stop()
    r = aioredis.from_url(stack.redis_url)
    try:
        assert await r.set("k", "v") and await r.get("k") == b"v"
    finally:
        await r.aclose()


@pytest.mark.parametrize("use_redis_server", [True, False], ids=["redis-server", "noida-redis"])
async def test_start_serve_stop_leaves_no_process(tmp_path: Path, use_redis_server: bool) -> None:
    if use_redis_server and redis_server_binary() is None:
        pytest.skip("redis-server not installed")
    stack = EmbeddedStack(tmp_path / "stack", use_redis_server=use_redis_server)
    await stack.start()
    pids = [p.pid for p in stack.processes if p.pid is not None]
    try:
        assert stack.running()
        assert len(pids) == (2 if use_redis_server else 1)
        assert stack.redis_backend == ("redis-server" if use_redis_server else "noida-db")
        assert all(procstat.running(pid) for pid in pids)
        await _roundtrip(stack)
        s = stack.settings(Settings())
        assert (s.kafka_bootstrap, s.redis_url) == (stack.kafka_bootstrap, stack.redis_url)
        assert Path(s.data_dir) == stack.data_dir and stack.clickhouse_path.is_dir()
    finally:
        await stack.stop()
    assert not stack.running()
    assert not any(procstat.running(pid) for pid in pids)
    host, port = stack.kafka_bootstrap.split(":")
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=0.5):
        pass
    await stack.stop()  # idempotent


async def test_create_topics_sets_partitions(kafka_bootstrap: str, unique_id: str) -> None:
    specs = [TopicSpec(f"{unique_id}.obs", 4), TopicSpec(f"{unique_id}.pred", 2)]
    assert await create_topics(kafka_bootstrap, specs) == [s.name for s in specs]
    assert await create_topics(kafka_bootstrap, specs) == []  # idempotent
    assert await describe_partitions(kafka_bootstrap, [s.name for s in specs]) == {
        f"{unique_id}.obs": 4,
        f"{unique_id}.pred": 2,
    }
    with pytest.raises(TopicError, match="has 4 partitions, expected 8"):
        await create_topics(kafka_bootstrap, [TopicSpec(f"{unique_id}.obs", 8)])


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        stack = EmbeddedStack(tmp_path, kafka_port=busy, redis_port=free_port())
        with pytest.raises(EmbeddedStackError, match=f"port 127.0.0.1:{busy} is already in use"):
            await stack.start()
    assert stack.processes == []


async def test_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "data-is-a-file"
    bad.write_text("x")
    stack = EmbeddedStack(bad, timeout=10)
    with pytest.raises(FileExistsError):
        await stack.start()
    assert stack.processes == []


async def test_component_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess("sh", ["sh", "-c", "echo boom-from-child; exit 3"], tmp_path / "sh.log")
    proc.start()
    try:
        with pytest.raises(RuntimeError, match="sh exited early:\nboom-from-child"):
            await wait_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=10, proc=proc)
    finally:
        assert proc.stop() == 3


async def test_waits_time_out_clearly() -> None:
    port = free_port()
    with pytest.raises(TimeoutError, match=f"Kafka at 127.0.0.1:{port} did not answer"):
        await wait_kafka(f"127.0.0.1:{port}", timeout=1)
    with pytest.raises(TimeoutError, match="Redis at .* did not answer"):
        await wait_redis(f"redis://127.0.0.1:{port}/0", timeout=0.5)


async def test_create_topics_on_unreachable_broker_fails() -> None:
    with pytest.raises(Exception) as err:
        await create_topics(f"127.0.0.1:{free_port()}", [TopicSpec("x", 1)], timeout=2)
    assert "Unable to bootstrap" in str(err.value) or isinstance(err.value, TimeoutError)


def test_session_stack_is_up(embedded_stack: EmbeddedStack) -> None:
    assert embedded_stack.running()
    assert all(
        os.path.isdir(p) for p in (embedded_stack.clickhouse_path, embedded_stack.qdrant_path)
    )
