"""noida-db as the embedded Kafka broker, and its readiness check (topics: kato_stream.topics)."""

from __future__ import annotations

import asyncio
import os
import time
from importlib import resources
from pathlib import Path

from aiokafka import AIOKafkaClient

from kato_stream.embedded.process import ManagedProcess


def noida_binary() -> str:
    """The noida-db executable shipped in the ``noida_db`` wheel (run directly: its Python
    wrapper does not forward SIGTERM, which would orphan the server)."""
    path = Path(str(resources.files("noida_db").joinpath("noida-db")))
    if not path.is_file():
        raise FileNotFoundError(f"noida-db binary not found at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


def noida_process(
    data_dir: Path, kafka_port: int | None, redis_port: int | None, host: str = "127.0.0.1"
) -> ManagedProcess:
    """A foreground ``noida-db start`` with only the requested services."""
    services = [n for n, p in (("kafka", kafka_port), ("redis", redis_port)) if p is not None]
    argv = [noida_binary(), "start", "--only", ",".join(services), "--host", host]
    if kafka_port is not None:
        argv += ["--kafka-port", str(kafka_port)]
    if redis_port is not None:
        argv += ["--redis-port", str(redis_port)]
    argv += ["--data-dir", str(data_dir)]
    return ManagedProcess("noida-db", argv, data_dir / "noida-db.log")


async def wait_kafka(
    bootstrap: str, timeout: float = 30.0, proc: ManagedProcess | None = None
) -> None:
    """Return once the broker answers a metadata request; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.running():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(client.bootstrap(), max(0.5, deadline - time.monotonic()))
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
        finally:
            await client.close()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s: {last}")
