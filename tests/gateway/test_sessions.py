"""KATO's session registry semantics against a real Redis (spec §6.1)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from kato_stream.gateway.sessions import (
    ACTIVE_INDEX,
    SessionRecord,
    SessionRegistry,
    new_session_id,
)
from kato_stream.settings import Settings


@pytest.fixture
async def redis(gw_settings: Settings) -> AsyncIterator[Redis]:
    r = Redis.from_url(gw_settings.redis_url)
    yield r
    await r.aclose()


@pytest.fixture
def registry(redis: Redis) -> SessionRegistry:
    return SessionRegistry(redis, default_ttl=3600)


def test_session_id_form() -> None:
    assert re.fullmatch(r"session-[0-9a-f]{32}-\d{13}", new_session_id())


async def test_create_stores_json_with_ttl_and_index(
    registry: SessionRegistry, redis: Redis
) -> None:
    rec = await registry.create("node-a", ttl_seconds=120, metadata={"k": 1})
    raw = await redis.get(f"kato:session:{rec.session_id}")
    stored = SessionRecord.loads(raw)
    assert stored.node_id == "node-a" and stored.ttl_seconds == 120 and stored.metadata == {"k": 1}
    assert 118 <= await redis.ttl(f"kato:session:{rec.session_id}") <= 120
    assert await redis.sismember(ACTIVE_INDEX, rec.session_id)


async def test_ttl_zero_means_default(registry: SessionRegistry) -> None:
    rec = await registry.create("n", ttl_seconds=0)
    assert rec.ttl_seconds == 3600


async def test_get_slides_expiry(registry: SessionRegistry, redis: Redis) -> None:
    rec = await registry.create("n", ttl_seconds=60)
    key = f"kato:session:{rec.session_id}"
    await redis.expire(key, 5)
    got = await registry.get(rec.session_id)
    assert got is not None and got.access_count == 1
    assert await redis.ttl(key) >= 59
    assert got.expires > datetime.now(UTC) + timedelta(seconds=58)


async def test_extend_sets_one_off_ttl_and_keeps_ttl_seconds(
    registry: SessionRegistry, redis: Redis
) -> None:
    rec = await registry.create("n", ttl_seconds=60)
    key = f"kato:session:{rec.session_id}"
    assert await registry.extend(rec.session_id, 500)
    assert await redis.ttl(key) >= 499
    assert SessionRecord.loads(await redis.get(key)).ttl_seconds == 60
    await registry.get(rec.session_id)  # the next access resets to the session's own TTL
    assert await redis.ttl(key) <= 60
    assert not await registry.extend("session-missing", 10)


async def test_expiry_by_ttl(registry: SessionRegistry) -> None:
    rec = await registry.create("n", ttl_seconds=1)
    assert await registry.exists(rec.session_id) == (True, False)
    await asyncio.sleep(1.3)
    assert await registry.get(rec.session_id) is None
    assert await registry.exists(rec.session_id) == (False, False)


async def test_exists_reports_stale_record_as_expired_and_deletes_it(
    registry: SessionRegistry, redis: Redis
) -> None:
    rec = await registry.create("n", ttl_seconds=60)
    rec.expires_at = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    await redis.set(f"kato:session:{rec.session_id}", rec.dumps(), ex=60)
    assert await registry.exists(rec.session_id) == (False, True)
    assert await redis.get(f"kato:session:{rec.session_id}") is None
    assert await registry.exists(rec.session_id) == (False, False)


async def test_exists_does_not_extend(registry: SessionRegistry, redis: Redis) -> None:
    rec = await registry.create("n", ttl_seconds=60)
    key = f"kato:session:{rec.session_id}"
    await redis.expire(key, 10)
    await registry.exists(rec.session_id)
    assert await redis.ttl(key) <= 10


async def test_delete_and_count(registry: SessionRegistry, redis: Redis) -> None:
    before = await registry.count()
    a = await registry.create("n1")
    await redis.set("kato:session:node:n1:active", a.session_id)
    assert await registry.count() == before + 1
    deleted = await registry.delete(a.session_id)
    assert deleted is not None and deleted.session_id == a.session_id
    assert await redis.get("kato:session:node:n1:active") is None
    assert await registry.count() == before
    assert await registry.delete(a.session_id) is None


async def test_count_is_approximate_after_ttl_expiry(registry: SessionRegistry) -> None:
    """KATO never removes TTL-expired ids from the index; neither does the registry."""
    before = await registry.count()
    await registry.create("n", ttl_seconds=1)
    await asyncio.sleep(1.2)
    assert await registry.count() == before + 1
