"""Marks of how far the stores hold ``kato.patterns``, and waiting on them (persisted.py),
against the run's real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from kato_stream.stream.persisted import (
    PersistWaiter,
    encode_marks,
    mark_key,
    parse_marks,
)


def test_header_round_trip_and_bad_values() -> None:
    assert parse_marks(encode_marks([(0, 5), (3, 12)])) == [(0, 5), (3, 12)]
    assert parse_marks(None) == [] and parse_marks(b"") == []
    assert parse_marks(b"x:1,2:y,4:7") == [(4, 7)]


async def test_wait_returns_once_every_partition_passed_its_offset(
    redis_url: str, unique_id: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    waiter = PersistWaiter(client, f"app-{unique_id}", "t.patterns")
    try:
        assert await waiter.reached([])
        assert not await waiter.reached([(0, 4)])  # no mark yet
        assert not await waiter.wait([(0, 4)], timeout=0.05)

        async def persister() -> None:  # what PatternPersister does after each commit
            await asyncio.sleep(0.05)
            await client.set(mark_key(f"app-{unique_id}", "t.patterns", 0), 4)  # below 5
            await asyncio.sleep(0.05)
            await client.set(mark_key(f"app-{unique_id}", "t.patterns", 1), 9)
            await client.set(mark_key(f"app-{unique_id}", "t.patterns", 0), 5)

        task = asyncio.ensure_future(persister())
        assert await waiter.wait([(0, 4), (1, 8)], timeout=5)
        await task
        assert not await waiter.reached([(0, 5)])  # 5 itself is not written yet
    finally:
        await client.aclose()
