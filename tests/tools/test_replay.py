"""Archive and replay against the real embedded broker (noida-db)."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from kato_stream.tools.archive import archive, read_archive
from kato_stream.tools.common import parse_time
from kato_stream.tools.replay import ReplayOptions, replay, replay_topic
from kato_stream.tools.source import RangeSpec
from tests.tools.helpers import env, make_topics, produce, read_all, values

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


def _stream(n_sessions: int = 3, per_session: int = 6) -> list[dict]:
    """Interleaved commands of several sessions on two nodes; every third has a client msg_id."""
    docs = []
    for i in range(per_session):
        for s in range(n_sessions):
            mid = f"c-{s}-{i}" if i % 3 == 0 else None
            op = "learn" if i == per_session - 1 else "observe"
            payload = {} if op == "learn" else {"strings": [f"a{i}", f"b{s}"]}
            docs.append(env(op, f"s{s}", f"n{s % 2}", mid, **payload))
    return docs


def _by_session(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for d in docs:
        out[d["session_id"]].append(d)
    return out


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("msg_id", "origin")}


async def test_archive_roundtrip_preserves_payloads_and_order(
    kafka_bootstrap: str, unique_id: str, tmp_path: Path
) -> None:
    src, dst = f"{unique_id}.src", f"{unique_id}.dst"
    await make_topics(kafka_bootstrap, (src, 4), (dst, 4))
    docs = _stream()
    coords = await produce(kafka_bootstrap, src, [*docs, b"not json"])
    path = tmp_path / "archive.jsonl"
    with open(path, "wb") as fh:
        summary = await archive(kafka_bootstrap, RangeSpec(topic=src), fh)
    assert summary["written"] == len(docs) + 1
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    assert {(x["partition"], x["offset"]) for x in lines} == set(coords)
    assert any("value_b64" in x for x in lines)  # the invalid record is kept byte for byte
    assert [r.value for r in read_archive(str(path)) if r.value == b"not json"] == [b"not json"]

    result = await replay(read_archive(str(path)), kafka_bootstrap, dst, ReplayOptions())
    assert (result.read, result.published, result.skipped_invalid, result.failed) == (
        len(docs) + 1,
        len(docs),
        1,
        0,
    )
    out = values(await read_all(kafka_bootstrap, dst, expect=len(docs)))
    assert len(out) == len(docs)
    got, want = _by_session(out), _by_session(docs)
    assert {s: [_strip(d) for d in v] for s, v in got.items()} == {
        s: [_strip(d) for d in v] for s, v in want.items()
    }
    # identity: the client's msg_id, else the source coordinates as origin
    src_id = {
        orjson.dumps(_strip(d), option=orjson.OPT_SORT_KEYS): f"{src}:{p}:{o}"
        for d, (p, o) in zip(docs, coords, strict=False)
    }
    for d, o in zip(want["s0"], got["s0"], strict=True):
        if d.get("msg_id"):
            assert (o["msg_id"], o.get("origin")) == (d["msg_id"], None)
        else:
            assert o.get("msg_id") is None
            assert o["origin"] == src_id[orjson.dumps(_strip(d), option=orjson.OPT_SORT_KEYS)]


async def test_offset_range_selection(kafka_bootstrap: str, unique_id: str) -> None:
    src, dst = f"{unique_id}.src", f"{unique_id}.dst"
    await make_topics(kafka_bootstrap, (src, 2), (dst, 1))
    docs = [env("observe", "s1", msg_id=f"m{i}", strings=[str(i)]) for i in range(10)]
    await produce(kafka_bootstrap, src, docs, partition=0)
    await produce(
        kafka_bootstrap, src, [env("observe", "s2", msg_id=f"q{i}") for i in range(5)], partition=1
    )

    spec = RangeSpec(topic=src, partitions=(0,), start_offset=3, end_offset=7)
    r = await replay_topic(kafka_bootstrap, spec, kafka_bootstrap, dst, ReplayOptions())
    assert r.published == 4 and r.ranges == {"0": [3, 7]}
    assert [v["msg_id"] for v in values(await read_all(kafka_bootstrap, dst, expect=4))] == [
        "m3",
        "m4",
        "m5",
        "m6",
    ]

    # per-partition explicit ranges; an open end stops at the end offset seen at start
    spec = RangeSpec(topic=src, offsets=((0, 8, None), (1, None, 2)))
    r = await replay_topic(kafka_bootstrap, spec, kafka_bootstrap, dst, ReplayOptions())
    assert r.published == 4 and r.ranges == {"0": [8, 10], "1": [0, 2]}
    got = [v["msg_id"] for v in values(await read_all(kafka_bootstrap, dst, expect=8))][4:]
    assert sorted(got) == ["m8", "m9", "q0", "q1"]


async def test_replay_into_itself_terminates(kafka_bootstrap: str, unique_id: str) -> None:
    src = f"{unique_id}.src"
    await make_topics(kafka_bootstrap, (src, 2))
    await produce(kafka_bootstrap, src, [env("observe", f"s{i}") for i in range(20)])
    r = await asyncio.wait_for(
        replay_topic(kafka_bootstrap, RangeSpec(topic=src), kafka_bootstrap, src, ReplayOptions()),
        30,
    )
    assert r.published == 20
    assert len(await read_all(kafka_bootstrap, src)) == 40


async def test_time_range_selection(kafka_bootstrap: str, unique_id: str) -> None:
    src, dst = f"{unique_id}.src", f"{unique_id}.dst"
    await make_topics(kafka_bootstrap, (src, 3), (dst, 3))
    # Recent timestamps: the broker's retention may delete records stamped long ago.
    t0 = (int(time.time()) - 120) * 1000
    docs = [env("observe", f"s{i % 4}", msg_id=f"m{i}") for i in range(30)]
    await produce(kafka_bootstrap, src, docs, timestamps=[t0 + i * 1000 for i in range(30)])
    since = datetime.fromtimestamp((t0 + 10_000) / 1000, UTC)
    # ISO-8601 with an offset, and naive (= UTC), as the CLI accepts them
    spec = RangeSpec(
        topic=src,
        since_ms=parse_time(since.isoformat()),
        until_ms=parse_time(since.replace(tzinfo=None).isoformat()) + 10_000,
    )
    r = await replay_topic(kafka_bootstrap, spec, kafka_bootstrap, dst, ReplayOptions())
    assert r.published == 10
    got = sorted(v["msg_id"] for v in values(await read_all(kafka_bootstrap, dst, expect=10)))
    assert got == sorted(f"m{i}" for i in range(10, 20))


async def test_session_and_node_filters_and_excluded_ops(
    kafka_bootstrap: str, unique_id: str
) -> None:
    src, dst = f"{unique_id}.src", f"{unique_id}.dst"
    await make_topics(kafka_bootstrap, (src, 4), (dst, 4))
    docs = _stream(n_sessions=4, per_session=5)  # s0,s2 on n0; s1,s3 on n1
    await produce(kafka_bootstrap, src, docs)
    r = await replay_topic(
        kafka_bootstrap, RangeSpec(topic=src), kafka_bootstrap, dst, ReplayOptions(session="s2")
    )
    assert (r.read, r.published, r.skipped_filter) == (20, 5, 15)
    r = await replay_topic(
        kafka_bootstrap,
        RangeSpec(topic=src),
        kafka_bootstrap,
        dst,
        ReplayOptions(node="n1", exclude_ops=frozenset({"learn"})),
    )
    assert (r.published, r.skipped_filter) == (8, 12)
    out = values(await read_all(kafka_bootstrap, dst, expect=13))
    assert [d["session_id"] for d in out].count("s2") == 5
    rest = [d for d in out if d["session_id"] != "s2"]
    assert {d["node_id"] for d in rest} == {"n1"} and all(d["op"] == "observe" for d in rest)


async def test_rate_limit_is_respected(kafka_bootstrap: str, unique_id: str) -> None:
    src, dst = f"{unique_id}.src", f"{unique_id}.dst"
    await make_topics(kafka_bootstrap, (src, 2), (dst, 2))
    n, rate = 60, 40.0
    await produce(kafka_bootstrap, src, [env("observe", f"s{i % 5}") for i in range(n)])
    r = await replay_topic(
        kafka_bootstrap, RangeSpec(topic=src), kafka_bootstrap, dst, ReplayOptions(), rate=rate
    )
    assert r.published == n
    assert r.duration_s >= (n - 1) / rate * 0.9  # 1.475 s at the limit; unlimited takes ~0.1 s
    assert r.duration_s < (n - 1) / rate + 20
    stamps = sorted(rec.timestamp for rec in await read_all(kafka_bootstrap, dst, expect=n))
    # No one-second window holds more than the rate (plus one for the window's edge).
    worst = max(sum(1 for t in stamps if s <= t < s + 1000) for s in stamps)
    assert worst <= rate + 2
    assert (stamps[-1] - stamps[0]) / 1000 >= (n - 1) / rate * 0.85


async def test_msg_ids_are_stable_across_replays(
    kafka_bootstrap: str, unique_id: str, tmp_path: Path
) -> None:
    src, dst = f"{unique_id}.src", f"{unique_id}.dst"
    await make_topics(kafka_bootstrap, (src, 3), (dst, 3))
    docs = _stream()
    await produce(kafka_bootstrap, src, docs)
    await replay_topic(kafka_bootstrap, RangeSpec(topic=src), kafka_bootstrap, dst, ReplayOptions())
    await replay_topic(kafka_bootstrap, RangeSpec(topic=src), kafka_bootstrap, dst, ReplayOptions())
    # the archive of the source replays with the same ids too
    path = tmp_path / "a.jsonl"
    with open(path, "wb") as fh:
        await archive(kafka_bootstrap, RangeSpec(topic=src), fh)
    await replay(read_archive(str(path)), kafka_bootstrap, dst, ReplayOptions())
    out = values(await read_all(kafka_bootstrap, dst, expect=3 * len(docs)))
    per_session = _by_session(out)
    for _s, seq in per_session.items():
        k = len(seq) // 3
        ids = [d.get("msg_id") or d["origin"] for d in seq]
        assert ids[:k] == ids[k : 2 * k] == ids[2 * k :]
        assert len(set(ids[:k])) == k
    # records without a client msg_id carry the source coordinates as origin
    assert all(
        d["msg_id"].startswith("c-") if d.get("msg_id") else d["origin"].startswith(f"{src}:")
        for d in out
    )


async def test_fresh_node_rewrite(kafka_bootstrap: str, unique_id: str) -> None:
    src, dst = f"{unique_id}.src", f"{unique_id}.dst"
    await make_topics(kafka_bootstrap, (src, 4), (dst, 4))
    docs = _stream(n_sessions=4, per_session=4)
    await produce(kafka_bootstrap, src, docs)
    opts = ReplayOptions(node="n0", to_node="fresh")
    r = await replay_topic(kafka_bootstrap, RangeSpec(topic=src), kafka_bootstrap, dst, opts)
    assert r.published == 8
    recs = await read_all(kafka_bootstrap, dst, expect=8)
    out = values(recs)
    assert {d["node_id"] for d in out} == {"fresh"}
    assert {d["session_id"] for d in out} == {"s0@fresh", "s2@fresh"}
    parts: dict[str, set[int]] = collections.defaultdict(set)
    for rec, d in zip(recs, out, strict=True):
        assert rec.key == d["session_id"].encode()  # the worker requires key == session id
        parts[d["session_id"]].add(rec.partition)
    assert all(len(p) == 1 for p in parts.values())
    got = _by_session(out)
    want = _by_session([d for d in docs if d["node_id"] == "n0"])
    for s, seq in want.items():
        assert [d["payload"] for d in got[f"{s}@fresh"]] == [d["payload"] for d in seq]
    # a custom, deterministic session map
    r = await replay_topic(
        kafka_bootstrap,
        RangeSpec(topic=src),
        kafka_bootstrap,
        dst,
        ReplayOptions(session="s1", to_node="x", session_map="bf-{src_node}-{session}"),
    )
    assert r.published == 4
    out = values(await read_all(kafka_bootstrap, dst, expect=12))
    mapped = [d for d in out if d["node_id"] == "x"]
    assert len(mapped) == 4 and {d["session_id"] for d in mapped} == {"bf-n1-s1"}


async def _run_cli(*argv: str, timeout: float = 60) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out, err


async def test_cli_archive_and_replay(kafka_bootstrap: str, unique_id: str, tmp_path: Path) -> None:
    src, dst = f"{unique_id}.src", f"{unique_id}.dst"
    await make_topics(kafka_bootstrap, (src, 2), (dst, 2))
    docs = _stream(n_sessions=2, per_session=5)
    await produce(kafka_bootstrap, src, docs)
    path = tmp_path / "dump.jsonl"
    rc, _, err = await _run_cli(
        "-m",
        "kato_stream.tools.archive",
        "--bootstrap",
        kafka_bootstrap,
        "--topic",
        src,
        "--range",
        "0:0:",
        "--range",
        "1:0:",
        "-o",
        str(path),
        "--json",
        "--no-progress",
    )
    assert rc == 0, err
    assert orjson.loads(err.splitlines()[-1])["written"] == len(docs)
    assert len(path.read_bytes().splitlines()) == len(docs)
    t0 = time.monotonic()
    rc, out, err = await _run_cli(
        "-m",
        "kato_stream.cli",
        "replay",
        "--bootstrap",
        kafka_bootstrap,
        "--from-file",
        str(path),
        "--to-topic",
        dst,
        "--session",
        "s1",
        "--json",
    )
    assert rc == 0, err
    summary = orjson.loads(out)
    assert (summary["read"], summary["published"], summary["skipped_filter"]) == (10, 5, 5)
    assert time.monotonic() - t0 < 60
    assert b"replay" in err  # the progress bar went to stderr
    got = values(await read_all(kafka_bootstrap, dst, expect=5))
    assert [d["payload"] for d in got] == [d["payload"] for d in docs if d["session_id"] == "s1"]


async def test_records_made_by_workers_are_not_replayed(
    kafka_bootstrap: str, unique_id: str
) -> None:
    """A worker's ticks (session expiry) and forward_to observes are on the input topic too;
    a replay skips them: its own learns make the forwards again, with its own ids."""
    from aiokafka import AIOKafkaProducer

    from kato_stream.stream.envelope import FORWARDED_HEADER
    from kato_stream.stream.expiry import TICK_KEY

    src, dst = f"{unique_id}.src", f"{unique_id}.dst"
    await make_topics(kafka_bootstrap, (src, 1), (dst, 1))
    docs = [env("observe", "s", "n0", strings=["a"]), env("learn", "s", "n0")]
    await produce(kafka_bootstrap, src, docs)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(src, b"", key=TICK_KEY)
        fwd = env("observe", "s/n1", "n1", "fwd-0123", strings=["PTRN|x"])
        await producer.send_and_wait(
            src, orjson.dumps(fwd), key=b"s/n1", headers=[(FORWARDED_HEADER, b"n0>n1")]
        )
    finally:
        await producer.stop()
    r = await replay_topic(
        kafka_bootstrap, RangeSpec(topic=src), kafka_bootstrap, dst, ReplayOptions()
    )
    assert (r.read, r.published, r.skipped_derived, r.skipped_invalid) == (4, 2, 2, 0)
    assert "2 made by workers" in r.text()
    out = values(await read_all(kafka_bootstrap, dst, expect=2))
    assert [d["op"] for d in out] == ["observe", "learn"]
