"""noida-db as the embedded Kafka broker, readiness checks and topic creation."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from aiokafka import AIOKafkaClient  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

from kato_stream.embedded.process import ManagedProcess

_TOPIC_ALREADY_EXISTS = 36


class TopicError(RuntimeError):
    """A topic could not be created, or exists with a different partition count."""


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


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Create ``{name: partitions}`` (existing ones are kept); returns the partition counts.

    Needed because auto-created topics get one partition.  Raises :class:`TopicError` if a
    topic cannot be created or already exists with a different partition count.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        new = [
            NewTopic(
                name,
                num_partitions=n,
                replication_factor=replication_factor,
                topic_configs=dict((configs or {}).get(name, {})),
            )
            for name, n in topics.items()
        ]
        if new:
            resp = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
            for err in getattr(resp, "topic_errors", ()):
                name, code = err[0], err[1]
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise TopicError(f"creating topic {name!r} failed: error {code} {err[2:]}")
        meta = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    counts = {m["topic"]: len(m["partitions"]) for m in meta}
    for name, n in topics.items():
        if counts.get(name) != n:
            raise TopicError(f"topic {name!r} has {counts.get(name)} partitions, expected {n}")
    return counts
