"""The session's bulky lists kept outside the session table (processor.py, session_lists.py).

The processor's split is checked against the inline processor record by record; the Redis
store against the real Redis of the embedded stack (and a closed port for its failures); the
worker end to end by reading its changelog and Redis after a stream with cognition-data gets.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from kato_stream import metrics
from kato_stream.embedded import free_port
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.engine_adapter import CoreEngineAdapter
from kato_stream.stream.ltm import LtmRegistry
from kato_stream.stream.processor import Outcome, Processor, Source
from kato_stream.stream.session_lists import (
    LIST_KEY,
    ListStore,
    Retired,
    decode,
    encode,
    load_or_empty,
    retired_lists,
    settle_put,
)
from tests.stream.harness import (
    by_source,
    collect,
    env_record,
    expected_outputs,
    mixed_stream,
    publish,
    setup_topics,
)


def _commands() -> list[tuple[bytes, bytes]]:
    """Observes (full and single-symbol paths), learns, gets, a clear and a close."""
    items = mixed_stream(2, range(4))
    s, n = "c0", "cn0"
    k = s.encode()
    items += [
        (k, env_record("observe", s, n, {"strings": ["a1", "b"]})),
        (k, env_record("configure", s, n, {"max_predictions": 3})),
        (k, env_record("get", s, n, {})),
        (k, env_record("clear_stm", s, n, {})),
        (k, env_record("get", s, n, {})),
        (k, env_record("observe", s, n, {"strings": ["a0", "b"]})),
        (k, env_record("close", s, n, {})),
        (k, env_record("observe", s, n, {"strings": ["a0", "b"]})),
        (k, env_record("get", s, n, {})),
    ]
    return items


def _run_inline(items: list[tuple[bytes, bytes]]) -> list[bytes]:
    proc = Processor(CoreEngineAdapter.from_settings(Settings()), LtmRegistry(), max_bytes=1 << 20)
    table: dict[str, Any] = {}
    out = []
    for off, (k, v) in enumerate(items):
        o = proc.process(k, v, Source("in", 0, off), table.get)
        if o.table_value is not None and o.session_id:
            table[o.session_id] = o.table_value
        out.append(codecs.dumps(o.record))
    return out


def _external_run(
    items: list[tuple[bytes, bytes]], fail_puts: bool = False
) -> tuple[list[bytes], dict[str, Any], dict[str, int]]:
    """The processor with external lists, the agent's I/O done with a dict as the store
    (``fail_puts``: every put fails, so the lists stay inline as settle_put leaves them)."""
    proc = Processor(
        CoreEngineAdapter.from_settings(Settings()),
        LtmRegistry(),
        max_bytes=1 << 20,
        external_lists=True,
    )
    table: dict[str, Any] = {}
    store: dict[tuple[str, str], tuple[str, list[Any]]] = {}  # what the agent keeps in Redis
    out: list[bytes] = []
    counts = {"loads": 0, "puts": 0, "loaded_fps": 0}
    for off, (k, v) in enumerate(items):
        src = Source("in", 0, off)
        o = proc.process(k, v, src, table.get)
        if o.needs:
            assert o.record is None and o.table_value is None  # nothing applied yet
            loaded = {}
            for name, ident in o.needs.items():
                got_id, got = store[(o.session_id, name)]  # type: ignore[index]
                assert got_id == ident
                loaded[name] = got
            counts["loads"] += 1
            counts["loaded_fps"] += "future_potentials" in loaded
            o = proc.process(k, v, src, table.get, loaded=loaded)
        # the agent's encoding: the record and the stored lists share their bytes
        lists = {n: lst for n, (_, lst) in (o.observed or {}).items()}
        record_bytes, encoded = codecs.dumps_sharing(o.record, lists)
        assert record_bytes == codecs.dumps(o.record)
        if o.observed and o.table_value is not None:
            if fail_puts:
                inline = {n: lst for n, (_, lst) in o.observed.items()}
                o.table_value["state"] = {**o.table_value["state"], **inline}
            else:
                counts["puts"] += 1
                for name, (ident, _) in o.observed.items():  # what Redis gives back
                    store[(o.session_id, name)] = (ident, decode(encoded[name]))  # type: ignore[index]
        if o.table_value is not None and o.session_id:
            table[o.session_id] = o.table_value
            state = o.table_value["state"]
            for name, id_key in (
                ("predictions", "predictions_id"),
                ("future_potentials", "future_potentials_id"),
            ):
                if state and state.get(id_key):
                    # the bulky list is in the table only where storing it failed
                    assert (name in state) == fail_puts, (name, state.keys())
        out.append(record_bytes)
    return out, table, counts


def test_external_lists_give_the_inline_records_and_leave_the_table() -> None:
    items = _commands()
    out, _, counts = _external_run(items)
    assert out == _run_inline(items)
    assert counts["puts"] > 0
    assert counts["loads"] >= 3  # the gets of mixed_stream and the first get above
    assert counts["loaded_fps"] > 0  # single-symbol observes ("a0") read the stored ones
    docs = [orjson.loads(r) for r in out]
    after_clear = [d for d in docs if d["op"] == "get"][-2]
    assert after_clear["response"]["predictions"] == []  # cleared: no list, nothing stored


def test_a_failed_store_keeps_the_lists_inline_and_later_commands_use_them() -> None:
    """settle_put's fallback seen by the processor: the lists stay inline, carried over,
    and the records are still the inline processor's."""
    items = _commands()
    out, table, counts = _external_run(items, fail_puts=True)
    assert out == _run_inline(items)
    assert counts["loads"] == 0  # inline: nothing to load
    state = table["c1"]["state"]
    assert state["predictions"] and state["predictions_id"]
    assert state["future_potentials"] and state["future_potentials_id"]


def test_decode_checks_the_shape() -> None:
    assert decode(encode([{"name": "x"}])) == [{"name": "x"}]
    assert decode(None) is None
    assert decode(b"not json") is None
    assert decode(b'{"list": []}') is None


async def test_store_round_trip_on_redis(redis_url: str, unique_id: str) -> None:
    s = dataclasses.replace(Settings(), redis_url=redis_url)
    store = ListStore(s)
    await store.start()
    sid = f"lists-{unique_id}"
    preds = [{"name": "p", "potential": 0.1 + 0.2, "future": [["a"]]}]
    fps = [{"future": [["b"]], "aggregate_potential": 1 / 3}]
    try:
        await store.put(
            sid, {"predictions": ("k#1", encode(preds)), "future_potentials": ("k@1", encode(fps))}
        )
        await store.put(sid, {"predictions": ("k#2", encode(fps))})  # a newer keeps the older
        both = {"predictions": "k#1", "future_potentials": "k@1"}
        assert await store.get(sid, both) == {"predictions": preds, "future_potentials": fps}
        assert await store.get(sid, {"predictions": "k#2"}) == {"predictions": fps}
        assert await store.get(sid, {"predictions": "k#0"}) == {"predictions": None}
        raw = await store.client.hget(
            LIST_KEY.format(app=s.app_id, sid=sid, field="predictions"), "k#1"
        )
        assert orjson.loads(raw) == preds  # floats come back exactly
        await store.forget([(sid, "predictions", "k#1"), (sid, "future_potentials", "k@1")])
        assert await store.get(sid, both) == {"predictions": None, "future_potentials": None}
        assert await store.get(sid, {"predictions": "k#2"}) == {"predictions": fps}
        assert await load_or_empty(store, sid, both) == {"predictions": [], "future_potentials": []}
        await store.forget([(sid, "predictions", "k#2")])
        assert not await store.client.exists(store.key(sid, "predictions"))  # emptied: gone
        # a batch: several sessions' lists in one round trip
        other = f"{sid}-b"
        await store.put_many(
            [
                (sid, {"predictions": ("k#3", encode(preds))}),
                (other, {"predictions": ("k#1", encode(fps)), "future_potentials": ("k@1", b"[]")}),
            ]
        )
        assert await store.get(sid, {"predictions": "k#3"}) == {"predictions": preds}
        assert await store.get(other, both) == {"predictions": fps, "future_potentials": []}
        await store.forget([(sid, "predictions", "k#3"), *((other, n, i) for n, i in both.items())])
    finally:
        await store.stop()


def test_retired_lists_wait_for_the_commit() -> None:
    """A replaced list is dropped only once the replacing command's offset is committed."""
    before = {"state": {"predictions_id": "a#1", "future_potentials_id": "a@1", "stm": []}}
    replaced = Outcome(
        session_id="s",
        table_value={"state": {"predictions_id": "b#1", "future_potentials_id": "a@1"}},
    )
    assert retired_lists(before, replaced) == [("s", "predictions", "a#1")]
    closed = Outcome(session_id="s", table_value={"state": None})
    assert retired_lists(before, closed) == [
        ("s", "predictions", "a#1"),
        ("s", "future_potentials", "a@1"),
    ]
    inline = {"state": {**before["state"], "predictions": [], "future_potentials": []}}
    assert retired_lists(inline, closed) == []  # never stored outside
    assert retired_lists(None, replaced) == []
    r = Retired()
    r.add("tp0", 5, "s", "predictions", "a#1")
    r.add("tp1", 2, "t", "predictions", "x#1")
    committed = {"tp0": 5, "tp1": 3}
    assert r.due(committed.__getitem__) == [("t", "predictions", "x#1")]  # 5 not past 5
    assert len(r) == 1
    committed["tp0"] = 6
    assert r.due(committed.__getitem__) == [("s", "predictions", "a#1")]
    assert len(r) == 0


def _fallbacks(action: str) -> float:
    return metrics.SESSION_LISTS_FALLBACKS.labels(action=action)._value.get()


async def test_redis_failures_lose_nothing() -> None:
    """A put that fails leaves the lists in the table value; a get that fails reads []."""
    dead = dataclasses.replace(
        Settings(), redis_url=f"redis://127.0.0.1:{free_port()}/0", store_timeout=1.0
    )
    store = ListStore(dead, client=aioredis.Redis.from_url(dead.redis_url))
    before_put, before_get = _fallbacks("put"), _fallbacks("get")
    lists = {"predictions": ("k#1", [{"name": "p"}]), "future_potentials": ("k@1", [{"f": 1}])}
    table_value = {"node_id": "n", "state": {"predictions_id": "k#1", "stm": [["a"]]}}
    put = asyncio.ensure_future(store.put("s", {n: (i, encode(v)) for n, (i, v) in lists.items()}))
    assert await settle_put(put, table_value, lists) is False
    assert table_value["state"] == {
        "predictions_id": "k#1",
        "stm": [["a"]],
        "predictions": [{"name": "p"}],
        "future_potentials": [{"f": 1}],
    }
    wanted = {"predictions": "k#1", "future_potentials": "k@1"}
    assert await load_or_empty(store, "s", wanted) == {"predictions": [], "future_potentials": []}
    assert await load_or_empty(None, "s", {"predictions": "k#1"}) == {"predictions": []}
    assert _fallbacks("put") == before_put + 1
    assert _fallbacks("get") == before_get + 3
    # a batch (agents.finish): one put_many for two commands; both keep their lists inline
    second = {"predictions": ("t#1", [{"name": "q"}])}
    values = [
        {"node_id": "n", "state": {"predictions_id": "k#2"}},
        {"node_id": "n", "state": {"predictions_id": "t#1"}},
    ]
    batch_put = asyncio.ensure_future(
        store.put_many(
            [
                ("s", {"predictions": ("k#2", encode([{"name": "p2"}]))}),
                ("t", {"predictions": ("t#1", encode([{"name": "q"}]))}),
            ]
        )
    )
    for value, observed in zip(
        values, [{"predictions": ("k#2", [{"name": "p2"}])}, second], strict=True
    ):
        assert await settle_put(batch_put, value, observed) is False
    assert values[0]["state"]["predictions"] == [{"name": "p2"}]
    assert values[1]["state"]["predictions"] == [{"name": "q"}]
    assert _fallbacks("put") == before_put + 3  # counted per command
    await store.client.aclose()
    with pytest.raises(Exception):  # noqa: B017 - any connection error: the port is closed
        await ListStore(dead).start()


@pytest.mark.stack
@pytest.mark.timeout(180)
async def test_worker_keeps_observe_predictions_in_redis(
    stream_settings: Settings, spawn_worker, tmp_path
) -> None:
    """Through a real worker: records equal the inline processor's, the changelog values
    carry no bulky list, and Redis holds each session's latest ones."""
    s = dataclasses.replace(
        stream_settings, persist=True, clickhouse_url=f"chdb://{tmp_path / 'chdb'}"
    )
    assert s.session_lists == "redis"  # the default
    await setup_topics(s)
    items = mixed_stream(3, range(3), prefix=s.topic_prefix)  # node ids of this test only
    sent = await publish(s.kafka_bootstrap, s.topic("observations"), items)
    w = spawn_worker(s)
    recs = await collect(s.kafka_bootstrap, s.topic("predictions"), len(items), timeout=120)
    assert len(recs) == len(items), w.log_tail()
    expected, _, _ = expected_outputs(sent, s)  # the inline processor, in process
    assert {k: v[0] for k, v in by_source(recs).items()} == expected
    gets = [orjson.loads(r.value) for r in recs if orjson.loads(r.value)["op"] == "get"]
    assert all(g["response"]["predictions"] for g in gets)

    changelog = f"{s.app_id}-sessions-changelog"
    logged = await collect(s.kafka_bootstrap, changelog, 1, timeout=30)
    values = [orjson.loads(r.value) for r in logged if r.value]
    for name in ("predictions", "future_potentials"):
        with_id = [v for v in values if v["state"] and v["state"].get(f"{name}_id")]
        assert with_id and all(name not in v["state"] for v in with_id)

    r = aioredis.Redis.from_url(s.redis_url)
    try:
        for g in gets:
            key = LIST_KEY.format(app=s.app_id, sid=g["session_id"], field="predictions")
            stored = await r.hgetall(key)
            assert g["response"]["predictions"] in [orjson.loads(v) for v in stored.values()]
        # replaced lists are dropped once their replacing commands are committed: each session
        # ends with the one list its last table value names
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            sizes = [
                await r.hlen(LIST_KEY.format(app=s.app_id, sid=g["session_id"], field=f))
                for g in gets
                for f in ("predictions", "future_potentials")
            ]
            if all(n <= 1 for n in sizes) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        assert all(n <= 1 for n in sizes), sizes
    finally:
        await r.aclose()
