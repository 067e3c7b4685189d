"""redis-server as the embedded Redis (no persistence: the stack's Redis is a cache)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import redis.asyncio as aioredis

from kato_stream.embedded.process import ManagedProcess


def redis_server_binary() -> str | None:
    """``redis-server`` on PATH, or None (the stack then uses noida-db's Redis)."""
    return shutil.which("redis-server")


def redis_process(
    binary: str, data_dir: Path, port: int, host: str = "127.0.0.1"
) -> ManagedProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--port", str(port),
        "--bind", host,
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--protected-mode", "no",
    ]  # fmt: skip
    return ManagedProcess("redis-server", argv, data_dir / "redis-server.log")


async def wait_redis(url: str, timeout: float = 30.0, proc: ManagedProcess | None = None) -> None:
    """Return once Redis answers PING; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.running():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        client = aioredis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            if await client.ping():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
        finally:
            await client.aclose()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"Redis at {url} did not answer within {timeout:.0f}s: {last}")
