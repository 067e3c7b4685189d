"""Session expiry on the stream path, against a real worker, broker and Redis.

What a user sees: a session opened with ``ttl_seconds: 2`` and left idle has an empty STM at
its next command; a worker removes what such a session left (its changelog value, its Redis
lists, its latest record) without anyone sending it anything, while sessions within their
TTL keep everything."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from kato_stream.cli import consume_records
from kato_stream.settings import Settings
from kato_stream.stores import RedisStore
from kato_stream.stores.redis_store import LATEST_KEY
from kato_stream.stream.app import SESSIONS_TABLE
from kato_stream.stream.session_lists import LIST_KEY
from tests.stream.harness import collect, env_record, publish, setup_topics
from tests.stream.test_metrics_live import scrape_worker, val

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]


def _session(sid: str, node: str, ttl: int | None) -> list[tuple[bytes, bytes]]:
    """open, two observes, a learn and an observe that predicts (lists kept in Redis)."""
    k = sid.encode()
    opened: dict[str, Any] = {"ttl_seconds": ttl} if ttl else {}
    return [
        (k, env_record("open", sid, node, opened)),
        (k, env_record("observe", sid, node, {"strings": ["a", "b"]})),
        (k, env_record("observe", sid, node, {"strings": ["c"]})),
        (k, env_record("learn", sid, node, {})),
        (k, env_record("observe", sid, node, {"strings": ["a"]})),
    ]


async def _outputs(s: Settings, n: int) -> list[dict[str, Any]]:
    recs = await collect(s.kafka_bootstrap, s.topic("predictions"), n, timeout=90)
    return [orjson.loads(r.value) for r in recs]


async def _keys(redis: RedisStore, sid: str, app_id: str) -> dict[str, bool]:
    c = redis.client
    lists = await c.keys(LIST_KEY.format(app=app_id, sid=sid, field="*"))
    return {
        "latest": bool(await c.exists(LATEST_KEY.format(sid=sid))),
        "lists": bool(lists),
    }


async def test_an_idle_session_has_an_empty_stm_at_its_next_command(
    stream_settings: Settings, spawn_worker, tmp_path: Path
) -> None:
    """The rule at a command: 6 s idle with a TTL of 2 s; the grace period keeps the worker
    from removing it first, so the command finds it expired and says so."""
    s = dataclasses.replace(stream_settings, session_expiry_grace=3600.0)
    await setup_topics(s)
    sid, node = f"{s.topic_prefix}-short", f"{s.topic_prefix}-n"
    first = _session(sid, node, ttl=2)
    await publish(s.kafka_bootstrap, s.topic("observations"), first)
    w = spawn_worker(s)
    before = await _outputs(s, len(first))
    assert [r["status"] for r in before] == ["ok"] * len(first), w.log_tail()
    assert before[-1]["stm_length"] == 1
    await asyncio.sleep(6)
    k = sid.encode()
    await publish(s.kafka_bootstrap, s.topic("observations"), [(k, env_record("get", sid, node))])
    after = await _outputs(s, len(first) + 1)
    (got,) = [r for r in after if r["op"] == "get"]
    assert got["status"] == "ok", got
    assert got["response"]["stm"] == []
    assert got["session_expired"] is True
    assert all("session_expired" not in r for r in after if r["op"] != "get")
    assert val(await scrape_worker(s), "kato_session_expirations_total", how="command") == 1


async def test_a_worker_removes_expired_sessions_and_keeps_live_ones(
    stream_settings: Settings, spawn_worker, redis_store: RedisStore, tmp_path: Path
) -> None:
    s = dataclasses.replace(
        stream_settings,
        persist=True,  # session lists and latest records in Redis
        clickhouse_url=f"chdb://{tmp_path / 'chdb'}",
        session_expiry_grace=0.0,
        session_sweep_seconds=0.5,
    )
    await setup_topics(s)
    p = s.topic_prefix
    short, live = f"{p}-short", f"{p}-live"
    items = _session(short, f"{p}-n1", ttl=2) + _session(live, f"{p}-n2", ttl=None)
    await publish(s.kafka_bootstrap, s.topic("observations"), items)
    w = spawn_worker(s)
    first = await _outputs(s, len(items))
    assert [r["status"] for r in first] == ["ok"] * len(items), w.log_tail()
    for sid in (short, live):  # each session's last observe predicts: lists go to Redis
        assert [r for r in first if r["session_id"] == sid][-1]["predictions"]

    # nobody sends anything: the worker ticks the idle partition and removes the session
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await _keys(redis_store, short, s.app_id) == {"latest": False, "lists": False}:
            break
        await asyncio.sleep(0.5)
    assert await _keys(redis_store, short, s.app_id) == {"latest": False, "lists": False}, (
        w.log_tail()
    )
    assert await _keys(redis_store, live, s.app_id) == {"latest": True, "lists": True}
    scrape = await scrape_worker(s)
    assert val(scrape, "kato_session_expirations_total", how="sweep") == 1
    assert val(scrape, "kato_sessions_live") == 1
    assert val(scrape, "kato_session_table_entries") == 1
    assert val(scrape, "kato_session_ticks_total") >= 1

    # the changelog's last word on the session is a tombstone: a restarted worker recovers
    # a table without it
    changelog = await consume_records(
        s.kafka_bootstrap, f"{s.app_id}-{SESSIONS_TABLE}-changelog", timeout=10, to_end=True
    )
    last = {}
    for r in changelog:
        last[r.key] = r.value
    assert last[orjson.dumps(short)] is None
    assert last[orjson.dumps(live)] is not None

    # ticks answer nothing: one output per command
    outs = await consume_records(s.kafka_bootstrap, s.topic("predictions"), timeout=10, to_end=True)
    assert len(outs) == len(items)

    # the next commands: the removed session starts empty, the live one has its STM
    gets = [
        (short.encode(), env_record("get", short, f"{p}-n1")),
        (live.encode(), env_record("get", live, f"{p}-n2")),
    ]
    await publish(s.kafka_bootstrap, s.topic("observations"), gets)
    out = await _outputs(s, len(items) + 2)
    by_sid = {r["session_id"]: r for r in out if r["op"] == "get"}
    assert by_sid[short]["response"]["stm"] == []
    assert by_sid[live]["response"]["stm"] == [["a"]]


async def test_a_restarted_worker_removes_the_expired_sessions_it_recovered(
    stream_settings: Settings, spawn_worker, redis_store: RedisStore, tmp_path: Path
) -> None:
    """The worker that wrote the session is gone before it expired; the next one finds it in
    the recovered table and removes it, with nobody sending anything."""
    s = dataclasses.replace(
        stream_settings,
        persist=True,
        clickhouse_url=f"chdb://{tmp_path / 'chdb'}",
        session_expiry_grace=0.0,
        session_sweep_seconds=3600.0,  # the first worker never gets round to it
    )
    await setup_topics(s)
    sid = f"{s.topic_prefix}-short"
    items = _session(sid, f"{s.topic_prefix}-n", ttl=3)
    await publish(s.kafka_bootstrap, s.topic("observations"), items)
    first = spawn_worker(s, "first")
    assert [r["status"] for r in await _outputs(s, len(items))] == ["ok"] * len(items)
    deadline = time.monotonic() + 30  # the latest record is written off the command path
    while not (await _keys(redis_store, sid, s.app_id))["latest"] and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    first.stop()
    assert await _keys(redis_store, sid, s.app_id) == {"latest": True, "lists": True}

    second = spawn_worker(dataclasses.replace(s, session_sweep_seconds=0.5), "second")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if await _keys(redis_store, sid, s.app_id) == {"latest": False, "lists": False}:
            break
        await asyncio.sleep(0.5)
    assert await _keys(redis_store, sid, s.app_id) == {"latest": False, "lists": False}, (
        second.log_tail()
    )
    assert val(await scrape_worker(s), "kato_session_expirations_total", how="sweep") == 1
