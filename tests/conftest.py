"""Shared fixtures: the REAL embedded components, started once per test session on free
ports under a private temp directory, and started only when a test asks for them.

| fixture | scope | yields |
|---|---|---|
| ``embedded_stack`` | session | started :class:`EmbeddedStack` (noida-db Kafka + redis-server) |
| ``kafka_bootstrap`` | session | ``"127.0.0.1:<port>"`` |
| ``redis_url`` | session | ``"redis://127.0.0.1:<port>/0"`` |
| ``chdb_path`` | session | the chdb data dir (chdb: one dir per process, so one per session) |
| ``qdrant_path`` | function | a fresh Qdrant local-mode dir (local mode locks its dir) |
| ``unique_id`` | function | a short unique token (``t`` + 10 hex) for node ids, topics, groups |
| ``stack_settings`` | function | :class:`Settings` on the stack: unique ``topic_prefix``/``app_id``, chdb at ``chdb_path``, Qdrant at ``qdrant_path``, free ``web_port``, 0.05 s store flush |
| ``clickhouse_store`` / ``redis_store`` / ``qdrant_store`` | function | started stores on ``stack_settings``, stopped after |

Tests share the broker, Redis and chdb: isolate by ``unique_id`` (node ids, topic
prefixes), never by flushing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kato_stream.embedded import EmbeddedStack, free_port
from kato_stream.settings import Settings
from kato_stream.stores import ClickHouseStore, QdrantStore, RedisStore


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(tmp_path_factory.mktemp("embedded-stack"), timeout=60)
    asyncio.run(stack.start())
    try:
        yield stack
    finally:
        asyncio.run(stack.stop())


@pytest.fixture(scope="session")
def kafka_bootstrap(embedded_stack: EmbeddedStack) -> str:
    return embedded_stack.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(embedded_stack: EmbeddedStack) -> str:
    return embedded_stack.redis_url


@pytest.fixture(scope="session")
def chdb_path(embedded_stack: EmbeddedStack) -> str:
    return str(embedded_stack.clickhouse_path)


@pytest.fixture
def qdrant_path(tmp_path: Path) -> str:
    path = tmp_path / "qdrant"
    path.mkdir()
    return str(path)


@pytest.fixture
def unique_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def stack_settings(embedded_stack: EmbeddedStack, qdrant_path: str, unique_id: str) -> Settings:
    return dataclasses.replace(
        embedded_stack.settings(Settings()),
        qdrant_url=f"file://{qdrant_path}",
        topic_prefix=unique_id,
        app_id=f"kato-stream-{unique_id}",
        web_port=free_port(),
        store_flush_seconds=0.05,
    )


@pytest.fixture
async def clickhouse_store(stack_settings: Settings) -> AsyncIterator[ClickHouseStore]:
    async with ClickHouseStore(stack_settings) as store:  # stop() flushes
        yield store


@pytest.fixture
async def redis_store(stack_settings: Settings) -> AsyncIterator[RedisStore]:
    async with RedisStore(stack_settings) as store:  # stop() flushes
        yield store


@pytest.fixture
async def qdrant_store(stack_settings: Settings) -> AsyncIterator[QdrantStore]:
    async with QdrantStore(stack_settings) as store:  # stop() flushes
        yield store
