"""Parsing and pacing helpers of the tools (no broker)."""

from __future__ import annotations

import asyncio
import time

import pytest

from kato_stream.tools.archive import line_to_record, record_to_line
from kato_stream.tools.common import RateLimiter, SourceRecord, parse_time
from kato_stream.tools.replay import ReplayOptions, Skip, rewrite
from kato_stream.tools.source import parse_partition_range


def test_parse_time() -> None:
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    assert parse_time("2023-11-14 22:13:20") == 1_700_000_000_000  # naive = UTC
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


def test_parse_partition_range() -> None:
    assert parse_partition_range("3") == (3, None, None)
    assert parse_partition_range("3:10") == (3, 10, None)
    assert parse_partition_range("3:10:20") == (3, 10, 20)
    assert parse_partition_range("3:10-20") == (3, 10, 20)
    assert parse_partition_range("3::20") == (3, None, 20)
    with pytest.raises(ValueError, match="P:START:END"):
        parse_partition_range("x:1:2")


def test_archive_line_roundtrip_keeps_bytes_that_are_not_json() -> None:
    rec = SourceRecord("t", 2, 9, 123, b"\xffkey", b"\x00binary", (("h", b"v"),))
    back = line_to_record(record_to_line(rec), source_name="f", line_no=1)
    assert back == rec
    bare = line_to_record(
        b'{"op":"learn","session_id":"s","node_id":"n"}', source_name="f.jsonl", line_no=7
    )
    assert (bare.identity, bare.key) == ("file:f.jsonl:0:7", b"s")


def test_rewrite_rules() -> None:
    rec = SourceRecord(
        "obs", 1, 5, None, b"s", b'{"op":"learn","session_id":"s","node_id":"n","payload":{}}'
    )
    key, value = rewrite(rec, ReplayOptions(to_node="m"))
    assert key == b"s@m"
    assert (
        value == b'{"node_id":"m","op":"learn","origin":"obs:1:5","payload":{},"session_id":"s@m"}'
    )
    # a replay of a replay keeps the first origin; a prefix starts a new generation
    again = SourceRecord("dst", 0, 9, None, b"s@m", value)
    assert b'"origin":"obs:1:5"' in rewrite(again, ReplayOptions())[1]
    assert b'"origin":"g2:obs:1:5"' in rewrite(again, ReplayOptions(id_prefix="g2:"))[1]
    with_id = SourceRecord(
        "obs", 1, 6, None, b"s", b'{"op":"learn","session_id":"s","node_id":"n","msg_id":"c1"}'
    )
    assert b'"msg_id":"c1"' in rewrite(with_id, ReplayOptions())[1]
    assert b'"msg_id":"x:c1"' in rewrite(with_id, ReplayOptions(id_prefix="x:"))[1]
    assert b"origin" not in rewrite(with_id, ReplayOptions())[1]
    for bad in (b"nope", b"[1]", b'{"op":"learn","session_id":"","node_id":"n"}', None):
        with pytest.raises(Skip, match="invalid"):
            rewrite(SourceRecord("obs", 0, 0, None, None, bad), ReplayOptions())
    with pytest.raises(Skip, match="filter"):
        rewrite(rec, ReplayOptions(exclude_ops=frozenset({"learn"})))


async def test_rate_limiter_paces_and_does_not_burst_after_a_stall() -> None:
    lim = RateLimiter(100)
    t0 = time.monotonic()
    for _ in range(21):
        await lim.wait()
    assert 0.18 <= time.monotonic() - t0 < 1.0
    await asyncio.sleep(1.2)  # a stall longer than a second resets the schedule
    t1 = time.monotonic()
    for _ in range(11):
        await lim.wait()
    assert time.monotonic() - t1 >= 0.09
    assert RateLimiter(0).rate is None


async def test_rate_limiter_never_catches_up_after_a_short_stall() -> None:
    # A stall shorter than a second used to release the overdue calls in one burst.
    lim = RateLimiter(100)
    for _ in range(5):
        await lim.wait()
    await asyncio.sleep(0.5)  # 50 calls' worth of schedule is now in the past
    t1 = time.monotonic()
    for _ in range(11):
        await lim.wait()
    assert time.monotonic() - t1 >= 0.09  # still 1/rate apart: no catch-up burst
