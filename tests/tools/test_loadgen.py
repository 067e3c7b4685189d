"""Load generator: the workload model, and a full run against an echo consumer on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from kato_stream.contracts import MSG_ID_HEADER, PATTERNS_HEADER, PROCESSING_HEADER, STATUS_HEADER
from kato_stream.tools.loadgen import Workload, _Tracker, format_report, percentile, run_load
from tests.tools.helpers import make_topics


def test_workload_shapes_and_determinism() -> None:
    wl = Workload(seed=3)
    assert len(wl.tokens()) == 200 and wl.tokens()[0] == "t000"
    w = wl.weights()
    assert w[0] == 1.0 and w[9] == pytest.approx(1 / 10**0.8)
    pats = wl.patterns(200)
    assert pats == Workload(seed=3).patterns(200) and pats != Workload(seed=4).patterns(200)
    assert all(2 <= len(p) <= 5 for p in pats)
    assert all(3 <= len(e) <= 15 and e == sorted(set(e)) for p in pats for e in p)
    assert {len(p) for p in pats} == {2, 3, 4, 5}
    # Zipf: the head token is far more common than the tail
    flat = [t for p in pats for e in p for t in e]
    assert flat.count("t000") > 5 * max(1, flat.count("t199"))


def test_observations_follow_patterns_with_noise() -> None:
    wl = Workload(seed=1, noise=0.0)
    pats = wl.patterns(5)
    it = wl.observations(pats, 0)
    seq: list[list[str]] = []
    while (x := next(it)) is not None:
        seq.append(x)
    assert seq in pats  # noise 0: exactly a stored pattern, then the clear marker
    noisy = Workload(seed=1, noise=0.5).observations(pats, 0)
    events = [x for x in (next(noisy) for _ in range(200)) if x is not None]
    assert all(events) and any(e not in [ev for p in pats for ev in p] for e in events)


def test_percentile_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert (percentile(xs, 50), percentile(xs, 95), percentile(xs, 99), percentile(xs, 100)) == (
        50,
        95,
        99,
        100,
    )
    assert percentile([], 50) == 0.0 and percentile([7.0], 99) == 7.0


@contextlib.asynccontextmanager
async def echo(bootstrap: str, src: str, dst: str) -> AsyncIterator[list[int]]:
    """A trivial stand-in worker: one record on ``dst`` per command on ``src``, same msg_id."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await c.start()
    await p.start()
    tps = [TopicPartition(src, i) for i in sorted(c.partitions_for_topic(src) or ())]
    c.assign(tps)
    await c.seek_to_end(*tps)
    for tp in tps:
        await c.position(tp)  # resolve "end" now, before the load starts
    count = [0]

    async def loop() -> None:
        while True:
            batch = await c.getmany(timeout_ms=50)
            for msgs in batch.values():
                for m in msgs:
                    d = orjson.loads(m.value)
                    rec = {
                        "msg_id": d.get("msg_id"),
                        "session_id": d["session_id"],
                        "op": d["op"],
                        "status": "ok",
                    }
                    await p.send(
                        dst,
                        orjson.dumps(rec),
                        key=m.key,
                        headers=[("kato-processing-seconds", b"0.0001")],
                    )
                    count[0] += 1

    task = asyncio.create_task(loop())
    try:
        yield count
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await p.stop()
        await c.stop()


def _headers(mid: str, status: str = "ok", **extra: bytes) -> list[tuple[str, bytes]]:
    out = [(MSG_ID_HEADER, mid.encode()), (STATUS_HEADER, status.encode())]
    out += [(k, v) for k, v in extra.items()]
    return out


def _observe_record(mid: str, n: int) -> bytes:
    preds = [{"name": f"p{i}"} for i in range(n)]
    return orjson.dumps({"msg_id": mid, "op": "observe", "status": "ok", "predictions": preds})


def test_tracker_matches_by_headers_and_decodes_only_what_it_reports() -> None:
    """An ok observe answer is matched and timed from its headers; its body is read for one
    in ``sample_every`` only.  Another client's record is skipped unread (its body here is
    not even JSON), and rejections, learns and kept records are always read."""
    tr = _Tracker(sample_every=4)
    for i in range(8):
        tr.on_sent(f"o{i}", "observe", 0.0)
    tr.on_sent("learn", "learn", 0.0)
    tr.on_sent("bad", "observe", 0.0)
    tr.on_sent("kept", "observe", 0.0)
    tr.keep.add("kept")
    tr.on_record(b"not json", _headers("someone-else"), 1.0)
    for i in range(8):
        tr.on_record(_observe_record(f"o{i}", i + 1), _headers(f"o{i}"), 1.0 + i)
    learn = orjson.dumps(
        {"msg_id": "learn", "op": "learn", "status": "ok", "learned_patterns": ["PTRN|a", "PTRN|b"]}
    )
    tr.on_record(learn, _headers("learn", **{PATTERNS_HEADER: b"0:1,0:2"}), 9.0)
    tr.on_record(orjson.dumps({"msg_id": "bad", "status": "error"}), _headers("bad", "error"), 9.5)
    tr.on_record(
        _observe_record("kept", 3), _headers("kept", **{PROCESSING_HEADER: b"0.002"}), 10.0
    )
    tr.on_record(_observe_record("o0", 1), _headers("o0"), 11.0)  # again: a duplicate

    assert tr.in_flight() == 0 and tr.duplicates == 1
    assert tr.latency["o3"] == 4.0 and tr.latency["kept"] == 10.0
    assert tr.rejected == 1 and tr.learned == 2
    # the 1st and 5th observe answers of the sample, and the kept one (3 predictions)
    assert tr.observe_predictions == [1, 5, 3]
    assert tr.decoded == 5  # o0, o4, learn, bad, kept; never the foreign record
    assert tr.kept["kept"]["predictions"] == [{"name": "p0"}, {"name": "p1"}, {"name": "p2"}]
    assert tr.processing == [0.002]
    assert len(tr.record_bytes) == 11


def test_tracker_reads_the_body_of_a_record_without_headers() -> None:
    """A producer that names nothing in its headers (an older worker) is matched by the
    body, as before."""
    tr = _Tracker(sample_every=100)
    tr.on_sent("m1", "observe", 0.0)
    tr.on_sent("m2", "observe", 0.0)
    tr.on_record(_observe_record("m1", 2), [], 0.5)
    tr.on_record(orjson.dumps({"msg_id": "m2", "status": "error"}), None, 0.7)
    tr.on_record(b"not json", [], 0.8)
    assert tr.latency == {"m1": 0.5, "m2": 0.7}
    assert tr.observe_predictions == [2] and tr.rejected == 1 and tr.decoded == 2


@pytest.mark.stack
@pytest.mark.timeout(120)
async def test_loadgen_against_echo(kafka_bootstrap: str, unique_id: str) -> None:
    src, dst = f"{unique_id}.obs", f"{unique_id}.pred"
    await make_topics(kafka_bootstrap, (src, 4), (dst, 4))
    async with echo(kafka_bootstrap, src, dst) as handled:
        report = await run_load(
            kafka_bootstrap,
            src,
            dst,
            sessions=3,
            rate=200,
            duration=1.5,
            preload=6,
            drain_timeout=20,
        )
    assert report["preload"]["patterns"] == 6
    assert report["preload"]["acknowledged"] == report["preload"]["commands"] >= 6 * 3
    assert 100 <= report["sent"] <= 302  # paced: never above 200/s (a starved CPU may send fewer)
    assert report["received"] == report["sent"] and report["missing"] == 0
    assert report["rejected"] == 0 and report["duplicates"] == 0
    assert handled[0] == report["preload"]["commands"] + report["sent"]
    assert report["send_rate"] <= 210
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert report["processing_ms"]["p50"] == pytest.approx(0.1)
    assert set(report["sla"]) == {"critical", "standard", "batch"}
    assert report["sla"]["batch"]["met"] == (lat["p95"] < 200)
    assert orjson.loads(orjson.dumps(report)) == report
    text = format_report(report)
    assert "P95 < 10 ms" in text and "p99" in text


@pytest.mark.stack
@pytest.mark.timeout(120)
async def test_loadgen_cli_json_against_echo(kafka_bootstrap: str, unique_id: str) -> None:
    src, dst = f"{unique_id}.obs", f"{unique_id}.pred"
    await make_topics(kafka_bootstrap, (src, 2), (dst, 2))
    async with echo(kafka_bootstrap, src, dst) as handled:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kato_stream.cli",
            "loadgen",
            "--bootstrap",
            kafka_bootstrap,
            "--input-topic",
            src,
            "--output-topic",
            dst,
            "--sessions",
            "2",
            "--duration",
            "1",
            "--preload",
            "3",
            "--node",
            "lg-node",
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err
    report = orjson.loads(out)
    assert report["node"] == "lg-node" and report["target_rate"] is None
    assert report["sent"] > 50 and report["received"] == report["sent"]
    assert handled[0] == report["sent"] + report["preload"]["commands"]
    assert all(isinstance(report["sla"][t]["met"], bool) for t in ("critical", "standard", "batch"))
