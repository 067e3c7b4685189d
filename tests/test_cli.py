"""``kato-stream topics create|check`` against the real broker: statuses and exit codes."""

from __future__ import annotations

import pytest

from kato_stream.cli import main
from kato_stream.settings import Settings
from kato_stream.topics import topic_specs


def test_topics_create_and_check(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in stack_settings.to_env().items():
        monkeypatch.setenv(k, v)
    names = [t.name for t in topic_specs(stack_settings)]

    def statuses() -> dict[str, str]:
        out = capsys.readouterr().out
        return {line.split("\t")[0]: line.split("\t")[2] for line in out.splitlines()}

    assert main(["topics", "check"]) == 1
    assert set(statuses().items()) == {(n, "missing") for n in names}
    assert main(["topics", "create"]) == 0
    assert set(statuses().items()) == {(n, "created") for n in names}
    assert main(["topics", "create"]) == 0  # idempotent
    assert set(statuses().items()) == {(n, "exists") for n in names}
    assert main(["topics", "check"]) == 0
    assert set(statuses().values()) == {"ok"}

    # a deployment expecting another partition count is told, not silently accepted
    more = str(stack_settings.partitions + 2)
    assert main(["topics", "create", "--partitions", more]) == 1
    err = capsys.readouterr().err
    assert f"expected {more}" in err and "error: topic" in err
    assert main(["topics", "check", "--partitions", more]) == 1
    assert f"has {stack_settings.partitions}" in capsys.readouterr().out


_MEMBER = r"""
import asyncio, sys
from aiokafka import AIOKafkaConsumer
from kato_stream.stream.group import client_id

async def main():
    c = AIOKafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
                         client_id=client_id("worker"))
    await c.start()
    while True:
        await c.getmany(timeout_ms=300)
        if c.assignment():
            print("joined", flush=True)

asyncio.run(main())
"""


def test_group_status_and_evict_dead(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator's view of a group holding a SIGKILLed worker, and the command that
    frees it (the worker's own watchdog does the same: kato_stream/stream/group.py)."""
    import subprocess
    import sys

    for k, v in stack_settings.to_env().items():
        monkeypatch.setenv(k, v)
    assert main(["topics", "create"]) == 0
    capsys.readouterr()
    topic = stack_settings.topic("observations")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _MEMBER,
            stack_settings.kafka_bootstrap,
            topic,
            stack_settings.app_id,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "joined"
        assert main(["group", "status"]) == 0
        out = capsys.readouterr().out
        assert f"{stack_settings.app_id}: Stable, 1 member(s)" in out
        assert "(process gone)" not in out
        assert main(["group", "evict-dead"]) == 0  # alive: left alone
        assert "0 dead member(s) evicted" in capsys.readouterr().out
    finally:
        proc.kill()
        proc.wait(10)
    assert main(["group", "status"]) == 0
    out = capsys.readouterr().out
    assert "(process gone)" in out and f"/{proc.pid}/" in out
    assert main(["group", "evict-dead"]) == 0
    assert "1 dead member(s) evicted" in capsys.readouterr().out
    assert main(["group", "status"]) == 0
    assert f"{stack_settings.app_id}: " in (out := capsys.readouterr().out)
    assert "0 member(s)" in out.split("\n")[0]
