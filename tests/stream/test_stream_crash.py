"""Crash recovery: SIGKILL a worker mid-stream, restart it, and check nothing was applied
twice or lost: every command is answered (redelivered duplicates carry identical bytes),
the final session states (``get``) and the pattern frequencies equal an uninterrupted run.

About half the restarts hit faust-streaming's recovery race (stream partitions resumed before
the seek to the committed offset), which skips a run of input offsets; the agent's continuity
guard (``kato_stream/stream/continuity.py``) must fill them, or this test fails."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from kato_stream.cli import consume_records
from kato_stream.settings import Settings
from kato_stream.stores import RedisStore
from kato_stream.stream import codecs
from kato_stream.stream.session_lists import FIELDS, ListStore
from tests.stream.harness import (
    by_source,
    chdb_frequencies,
    expected_outputs,
    fold_patterns,
    kb_summary,
    mixed_stream,
    publish,
    setup_topics,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]


async def test_sigkill_mid_stream_then_restart(
    stream_settings: Settings, spawn_worker, redis_store: RedisStore, tmp_path: Path
) -> None:
    # persistence on, into a chdb directory of this test (the two workers never overlap)
    s = dataclasses.replace(
        stream_settings, persist=True, clickhouse_url=f"chdb://{tmp_path / 'chdb'}"
    )
    await setup_topics(s)
    # node ids of this test only: Redis is shared by the whole run (tests/conftest.py)
    items = mixed_stream(sessions=6, rounds=range(40), prefix=s.topic_prefix)
    sent = await publish(s.kafka_bootstrap, s.topic("observations"), items)
    want, want_ltm, _ = expected_outputs(sent, s)

    w1 = spawn_worker(s, "first")
    deadline = time.monotonic() + 90
    seen = 0
    while time.monotonic() < deadline:
        seen = len(
            await consume_records(
                s.kafka_bootstrap, s.topic("predictions"), timeout=10, to_end=True
            )
        )
        if seen >= len(items) // 4:
            break
    assert seen >= len(items) // 4, w1.log_tail()
    w1.kill()  # SIGKILL: no commit, no flush, no LeaveGroup
    killed_at = len(
        await consume_records(s.kafka_bootstrap, s.topic("predictions"), timeout=10, to_end=True)
    )
    assert killed_at < len(items), "worker finished before the kill: make the stream longer"

    # what an operator does: start the worker again; nobody touches the group by hand (the
    # embedded broker never expires the dead member: the new worker's watchdog must)
    w2 = spawn_worker(s, "second")
    started = time.monotonic()
    recs = []
    resumed = None
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        recs = await consume_records(
            s.kafka_bootstrap, s.topic("predictions"), timeout=10, to_end=True
        )
        if resumed is None and len(recs) > killed_at:
            resumed = time.monotonic() - started
        if len(by_source(recs)) >= len(items):
            break
        await asyncio.sleep(0.5)
    assert resumed is not None and resumed <= s.session_timeout + 10, (resumed, w2.log_tail())
    got = by_source(recs)
    missing = sorted(set(want) - set(got))
    assert not missing, (
        missing,
        {p: max(o for q, o in got if q == p) for p, _ in got},
        w2.log_tail(),
    )
    for src, payloads in got.items():
        assert set(payloads) == {want[src]}, src  # duplicates only as identical re-deliveries
    # LTM: what any worker rebuilds from the pattern topic equals the uninterrupted run
    pats = await consume_records(s.kafka_bootstrap, s.topic("patterns"), timeout=20, to_end=True)
    assert kb_summary(fold_patterns(pats)) == kb_summary(want_ltm)
    freqs = [f for node in kb_summary(want_ltm).values() for f in node.values()]
    assert max(freqs) > 1  # some patterns were learned more than once

    # the durable stores hold the same frequencies: nothing lost, nothing doubled
    want_kb = kb_summary(want_ltm)

    async def redis_mismatches() -> dict[str, tuple[int, int | None]]:
        """``{node/pattern: (wanted, in Redis)}`` for every frequency Redis does not hold yet."""
        out: dict[str, tuple[int, int | None]] = {}
        for node, pats in want_kb.items():
            for name, freq in pats.items():
                meta = await redis_store.get_pattern_meta(node, name.removeprefix("PTRN|"))
                have = None if meta is None else meta["frequency"]
                if have != freq:
                    out[f"{node}/{name}"] = (freq, have)
        return out

    deadline = time.monotonic() + 90
    while await redis_mismatches() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    wrong = await redis_mismatches()
    assert not wrong, (wrong, w1.log_tail(3000), w2.log_tail(6000))
    # no orphaned session lists: each session's Redis hashes end up holding only the lists
    # its table value names (the crash forgot which lists were due for deletion)
    store = ListStore(s)
    await store.start()
    try:
        sids = sorted({codecs.loads(x.value)["session_id"] for x in sent})

        async def orphans() -> dict[str, int]:
            out = {}
            for sid in sids:
                for name in FIELDS:
                    n = await store.client.hlen(store.key(sid, name))
                    if n > 1:
                        out[f"{sid}:{name}"] = n
            return out

        deadline = time.monotonic() + 30
        while await orphans() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert not await orphans(), w2.log_tail()
    finally:
        await store.stop()
    w2.stop()  # SIGTERM: the persister flushes its last batch, chdb is released
    assert chdb_frequencies(s, sorted(want_kb)) == want_kb
